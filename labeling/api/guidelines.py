"""Guidelines and flags: read and edit a project's labeling guidelines; flag a document; list the flags.

Every member reads the guidelines (Markdown source and sanitised HTML); managers replace them.
Annotators flag the documents they hold or labeled (reviewers and managers: any), which sends the
document to review; reviewers and managers list the flags.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.request import Request
from rest_framework.response import Response

from labeling import roles
from labeling.api.base import BaseApi, project_or_404
from labeling.api.permissions import IsProjectAnnotator, IsProjectManager, IsProjectMember, IsProjectReviewer
from labeling.models import DocumentFlag, FlagKind, ReviewState
from labeling.selectors.flags import flag_counts, flaggable_document, flags_list
from labeling.selectors.guidelines import guidelines_get
from labeling.services.flags import document_flag
from labeling.services.guidelines import MAX_GUIDELINES_CHARS, MAX_LABEL_NOTE_CHARS, guidelines_update
from labeling.services.review import MAX_COMMENT_CHARS


class _Strict(serializers.Serializer):
    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({field: "unknown field" for field in sorted(unknown)})
        return attrs


class _Text(serializers.CharField):
    """A CharField that takes only JSON strings (DRF's turns a number into its digits)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return str(super().to_internal_value(data))


class LabelGuidelineSerializer(serializers.Serializer):
    name = serializers.CharField()
    text = serializers.CharField()
    key = serializers.CharField(allow_blank=True)
    markdown = serializers.CharField(allow_blank=True, help_text="what this label means, with examples (Markdown)")
    html = serializers.CharField(allow_blank=True, help_text="the note rendered and sanitised")

    class Meta:
        ref_name = "LabelGuideline"


class GuidelinesSerializer(serializers.Serializer):
    markdown = serializers.CharField(allow_blank=True, help_text="the guidelines as written (Markdown)")
    html = serializers.CharField(allow_blank=True, help_text="rendered and sanitised: safe to show as is")
    labels = LabelGuidelineSerializer(many=True, help_text="every label, in set order, with its note")

    class Meta:
        ref_name = "Guidelines"


class GuidelinesApi(BaseApi):
    class InputSerializer(_Strict):
        markdown = _Text(
            required=False, allow_blank=True, trim_whitespace=False, max_length=MAX_GUIDELINES_CHARS,
            help_text="the guidelines (Markdown); left out: unchanged",
        )
        labels = serializers.DictField(
            child=_Text(allow_blank=True, trim_whitespace=False, max_length=MAX_LABEL_NOTE_CHARS),
            required=False,
            help_text="{label name: Markdown} for every label that has a note (a label left out loses "
            "its note); left out: unchanged",
        )

        class Meta:
            ref_name = "GuidelinesUpdate"

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            attrs = super().validate(attrs)
            if not attrs:
                raise serializers.ValidationError({"markdown": "send markdown, labels or both"})
            return attrs

    def get_permissions(self) -> list[Any]:
        return [IsProjectManager()] if self.request.method == "PUT" else [IsProjectMember()]

    @extend_schema(operation_id="guidelines_retrieve", responses=GuidelinesSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        return Response(GuidelinesSerializer(guidelines_get(project=project_or_404(project_id))).data)

    @extend_schema(
        operation_id="guidelines_update",
        request=InputSerializer,
        responses=GuidelinesSerializer,
        description=f"Replace the guidelines (at most {MAX_GUIDELINES_CHARS:,} characters of Markdown) and/or "
        f"the per-label notes (at most {MAX_LABEL_NOTE_CHARS:,} each). Raw HTML is allowed but sanitised on "
        "read: scripts, styles, event handlers and javascript: links never reach a page. Audited "
        "(guidelines.updated).",
    )
    def put(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = guidelines_update(project=project, by=request.user, **data.validated_data)
        return Response(GuidelinesSerializer(guidelines_get(project=project)).data)


class FlagSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    document_id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=FlagKind.choices)
    author = serializers.CharField()
    comment = serializers.CharField(allow_blank=True)
    review_item = serializers.IntegerField(help_text="the review item the flag opened or joined")
    review_state = serializers.ChoiceField(choices=ReviewState.choices, help_text="open: not decided yet")
    created_at = serializers.DateTimeField()

    class Meta:
        ref_name = "Flag"


def _flag_row(flag: DocumentFlag) -> dict[str, Any]:
    return {
        "id": flag.pk, "document_id": flag.document_id, "kind": flag.kind, "author": flag.author.get_username(),
        "comment": flag.comment.text if flag.comment else "", "review_item": flag.item_id,
        "review_state": flag.item.state, "created_at": flag.created_at,
    }


class DocumentFlagApi(BaseApi):
    permission_classes = [IsProjectAnnotator]

    class InputSerializer(_Strict):
        kind = serializers.ChoiceField(choices=FlagKind.choices)
        comment = _Text(
            required=False, allow_blank=True, max_length=MAX_COMMENT_CHARS, help_text="shown to reviewers"
        )

        class Meta:
            ref_name = "FlagCreate"

    @extend_schema(
        operation_id="document_flag",
        request=InputSerializer,
        responses={201: FlagSerializer, 200: FlagSerializer},
        description="Flag a document (unclear, offensive, duplicate) with an optional comment: it goes to the "
        "review queue (reason flag, or joining its open review item). Annotators flag documents they hold "
        "or labeled (others are 404); reviewers and managers any. The same flag again answers 200 and "
        "changes nothing.",
    )
    def post(self, request: Request, project_id: int, document_id: int) -> Response:
        project = project_or_404(project_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        document = flaggable_document(
            project=project, document_id=document_id, user=request.user,
            any_document=roles.can(request.user, roles.REVIEW, project.pk),
        )
        if document is None:
            raise NotFound(f"document {document_id} does not exist")
        flag, created = document_flag(document=document, author=request.user, **data.validated_data)
        flag = DocumentFlag.objects.select_related("author", "item", "comment").get(pk=flag.pk)
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(FlagSerializer(_flag_row(flag)).data, status=code)


class FlagListApi(BaseApi):
    permission_classes = [IsProjectReviewer]

    @extend_schema(
        operation_id="flags_list",
        parameters=[
            OpenApiParameter("kind", enum=FlagKind.values, required=False),
            OpenApiParameter("state", enum=ReviewState.values, required=False, description="the review item's state"),
        ],
        responses=inline_serializer(
            "FlagList",
            {
                "counts": serializers.JSONField(help_text="open (flags still in review), total, open_by_kind"),
                "flags": FlagSerializer(many=True),
            },
        ),
        description="The project's flags, newest first (at most 500), and the counts of flags still in review.",
    )
    def get(self, request: Request, project_id: int) -> Response:
        project = project_or_404(project_id)
        kind = request.query_params.get("kind")
        if kind is not None and kind not in FlagKind.values:
            raise serializers.ValidationError({"kind": f"must be one of {FlagKind.values}"})
        state = request.query_params.get("state")
        if state is not None and state not in ReviewState.values:
            raise serializers.ValidationError({"state": f"must be one of {ReviewState.values}"})
        rows = [_flag_row(flag) for flag in flags_list(project=project, kind=kind, state=state)[:500]]
        return Response({"counts": flag_counts(project=project), "flags": FlagSerializer(rows, many=True).data})
