"""What every API view shares: a size- and depth-limited JSON parser, the project-membership gate, JSON 404s.

The gate (labeling/api/scope.py) answers 404 to a non-member of the project the URL is about;
members whose role lacks the operation then get 403 from the view's permission classes
(labeling/api/permissions.py).
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.files.uploadhandler import FileUploadHandler, TemporaryFileUploadHandler
from django.db.models import Model
from django.http import HttpRequest
from rest_framework.exceptions import NotFound
from rest_framework.views import APIView

from labeling.api.parsers import LimitedJSONParser
from labeling.api.scope import scope_project, scope_project_id
from labeling.api.throttles import CountsFailedAuthentication
from labeling.models import Project

__all__ = ["BaseApi", "LimitedJSONParser", "get_or_404", "project_or_404", "request_project_or_404"]

M = TypeVar("M", bound=Model)


class LimitedUploadHandler(FileUploadHandler):
    """Refuse a multipart body over MAX_UPLOAD_BYTES while it streams, before it is spooled to disk.

    A declared Content-Length over the limit is refused before a byte is read; a body that declares
    less (or nothing, chunked) is counted as it arrives and cut off at the limit. Either way the
    answer is 413 (``RequestDataTooBig``, see labeling/api/errors.py) and no partial file is kept.
    """

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.received = 0

    def handle_raw_input(self, input_data: Any, META: Any, content_length: int, boundary: Any,
                         encoding: str | None = None) -> None:
        if content_length > settings.MAX_UPLOAD_BYTES:
            raise RequestDataTooBig(
                f"the body is {content_length:,} bytes; uploads are limited to {settings.MAX_UPLOAD_BYTES:,}"
            )

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.MAX_UPLOAD_BYTES:
            raise RequestDataTooBig(f"the file is larger than the {settings.MAX_UPLOAD_BYTES:,}-byte limit")
        return raw_data  # passed on to the next handler, which spools it

    def file_complete(self, file_size: int) -> None:
        return None


def limit_uploads(request: Any) -> None:
    """Give ``request`` (before its body is read) the size-limited, disk-spooling upload handlers."""
    django_request = getattr(request, "_request", request)
    django_request.upload_handlers = [
        LimitedUploadHandler(django_request), TemporaryFileUploadHandler(django_request),
    ]


class BaseApi(CountsFailedAuthentication, APIView):
    parser_classes = [LimitedJSONParser]
    # Set by the membership gate: the project this request is about (None: the URL names none).
    scope_project_id: int | None = None

    # Rate limits count before the permission check, so anonymous probing and token guessing are
    # throttled too (DRF's default order answers 401 forever without counting). The membership gate
    # sits between them: 401 for anonymous callers, then 404 for non-members, then 403 for roles.
    def check_permissions(self, request: Any) -> None:
        self._throttles_checked = True
        super().check_throttles(request)
        if request.user.is_authenticated:
            self.scope_project_id = scope_project_id(self.kwargs, request.user)
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


def request_project_or_404(request: Any, project_id: int) -> Project:
    """The URL's project: the row the caller's token statement read with it (no query), else one read."""
    return scope_project(request.user, project_id) or project_or_404(project_id)
