"""What every API view shares: a size-limited JSON parser and project / object lookups with JSON 404s."""

from __future__ import annotations

from typing import Any, TypeVar

from django.conf import settings
from django.db.models import Model
from rest_framework.exceptions import NotFound
from rest_framework.parsers import JSONParser
from rest_framework.views import APIView

from labeling.api.errors import PayloadTooLarge
from labeling.models import Project

M = TypeVar("M", bound=Model)


class LimitedJSONParser(JSONParser):
    """DRF reads JSON straight from the stream; enforce DATA_UPLOAD_MAX_MEMORY_SIZE here (413)."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        if limit is not None and request is not None:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
            if declared > limit:
                raise PayloadTooLarge(f"the body is {declared:,} bytes; the limit is {limit:,}")
        return super().parse(stream, media_type, parser_context)


class BaseApi(APIView):
    parser_classes = [LimitedJSONParser]

    # Rate limits count before the permission check, so anonymous probing and token guessing are
    # throttled too (DRF's default order answers 401 forever without counting).
    def check_permissions(self, request: Any) -> None:
        self._throttles_checked = True
        super().check_throttles(request)
        super().check_permissions(request)

    def check_throttles(self, request: Any) -> None:
        if not getattr(self, "_throttles_checked", False):
            super().check_throttles(request)


def get_or_404(model: type[M], pk: Any, **filters: Any) -> M:
    obj = model._default_manager.filter(pk=pk, **filters).first()
    if obj is None:
        raise NotFound(f"{model._meta.verbose_name} {pk} does not exist")
    return obj


def project_or_404(project_id: int) -> Project:
    return get_or_404(Project, project_id)
