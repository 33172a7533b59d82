"""The audit log: a project's events (its managers and staff) and the site-wide log (staff), filtered,
paged by cursor, or exported whole as CSV / JSONL (streamed)."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from labeling.api.base import BaseApi, project_or_404
from labeling.api.permissions import IsAdmin, IsProjectManager
from labeling.api.stats import NoFormatOverride
from labeling.models import AuditAction, AuditEvent
from labeling.selectors.audit import AuditFilters, audit_csv_chunks, audit_event_list, audit_jsonl_chunks

_MAX_ID = 2**63 - 1
_EXPORTS = {"csv": ("text/csv; charset=utf-8", "csv"), "jsonl": ("application/x-ndjson", "jsonl")}


class AuditEventSerializer(serializers.ModelSerializer):
    action = serializers.ChoiceField(choices=AuditAction.choices)
    data = serializers.JSONField(help_text="what changed (old -> new values), per action; never secrets")

    class Meta:
        model = AuditEvent
        ref_name = "AuditEvent"
        fields = (
            "id", "created_at", "action", "actor_id", "actor_name", "project_id", "project_name",
            "target_type", "target_id", "target_repr", "data",
        )


class AuditPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="the next (older) page; null on the last")
    previous = serializers.URLField(allow_null=True, help_text="the previous (newer) page; null on the first")
    results = AuditEventSerializer(many=True)

    class Meta:
        ref_name = "AuditPage"


class AuditFilterSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=AuditAction.choices, required=False, help_text="one action")
    actor = serializers.CharField(required=False, max_length=150, help_text="the actor's username (then)")
    actor_id = serializers.IntegerField(required=False, min_value=1, max_value=_MAX_ID)
    since = serializers.DateTimeField(required=False, help_text="ISO 8601; events at or after it")
    until = serializers.DateTimeField(required=False, help_text="ISO 8601; events before it")
    target_type = serializers.CharField(
        required=False, max_length=32, help_text="user, project, model_version, annotation, review_item, training_run"
    )
    target_id = serializers.CharField(required=False, max_length=64)
    format = serializers.ChoiceField(
        choices=["json", *_EXPORTS], default="json",
        help_text="json: a page of events; csv / jsonl: every matching event, streamed as a file",
    )
    cursor = serializers.CharField(required=False, help_text="the next / previous link's cursor")
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500)

    class Meta:
        ref_name = "AuditFilter"

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since >= until:
            raise serializers.ValidationError({"until": "must be later than since"})
        return attrs


class SiteAuditFilterSerializer(AuditFilterSerializer):
    project = serializers.IntegerField(required=False, min_value=1, max_value=_MAX_ID, help_text="a project's id")

    class Meta:
        ref_name = "SiteAuditFilter"


class AuditCursor(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 500

    def decode_cursor(self, request: Request) -> Any:
        try:
            return super().decode_cursor(request)
        except NotFound:  # DRF answers 404 "Invalid cursor"; it is a bad parameter, and it has a name
            raise serializers.ValidationError({"cursor": "not a cursor from a next / previous link"}) from None


class _AuditListApi(BaseApi):
    content_negotiation_class = NoFormatOverride
    filter_serializer: type[AuditFilterSerializer] = AuditFilterSerializer

    def _answer(self, request: Request, *, project_id: int | None, name: str) -> Any:
        params = self.filter_serializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        p = params.validated_data
        events = audit_event_list(
            filters=AuditFilters(
                project_id=project_id if project_id is not None else p.get("project"),
                action=p.get("action"),
                actor=p.get("actor"),
                actor_id=p.get("actor_id"),
                since=p.get("since"),
                until=p.get("until"),
                target_type=p.get("target_type"),
                target_id=p.get("target_id"),
            )
        )
        fmt = p["format"]
        if fmt in _EXPORTS:
            content_type, suffix = _EXPORTS[fmt]
            chunks = audit_csv_chunks(events) if fmt == "csv" else audit_jsonl_chunks(events)
            response = StreamingHttpResponse(chunks, content_type=content_type)
            response["Content-Disposition"] = f'attachment; filename="{name}.{suffix}"'
            return response
        paginator = AuditCursor()
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response(AuditEventSerializer(page, many=True).data)


_DESCRIPTION = (
    "Who did what and when, newest first: settings and policy changes, membership changes, promote / "
    "rollback, retrains by hand, exports, label edits, review decisions, API tokens, projects created / "
    "deleted. Filters are ANDed; a bad value is a 400 naming the parameter. format=csv or jsonl streams "
    "every matching event as a file (CSV cells are spreadsheet-safe)."
)
_RESPONSES = {
    (200, "application/json"): AuditPageSerializer,
    (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="format=csv: a header, one row per event"),
    (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="format=jsonl: one event a line"),
}


class ProjectAuditApi(_AuditListApi):
    """GET the project's audit log: its managers and staff."""

    permission_classes = [IsProjectManager]

    @extend_schema(
        operation_id="projects_audit", parameters=[AuditFilterSerializer], responses=_RESPONSES,
        description=_DESCRIPTION,
    )
    def get(self, request: Request, project_id: int) -> Response | StreamingHttpResponse:
        project = project_or_404(project_id)
        return self._answer(request, project_id=project.pk, name=f"project-{project.pk}-audit")


class SiteAuditApi(_AuditListApi):
    """GET the whole site's audit log (API tokens have no project): staff only."""

    permission_classes = [IsAdmin]
    filter_serializer = SiteAuditFilterSerializer

    @extend_schema(
        operation_id="audit_list", parameters=[SiteAuditFilterSerializer], responses=_RESPONSES,
        description=_DESCRIPTION + " Staff only; `project` narrows it to one project (deleted ones too).",
    )
    def get(self, request: Request) -> Response | StreamingHttpResponse:
        return self._answer(request, project_id=None, name="audit")
