"""What every API view shares: a size- and depth-limited JSON parser, the project-membership gate, JSON 404s.

The gate (labeling/api/scope.py) answers 404 to a non-member of the project the URL is about;
members whose role lacks the operation then get 403 from the view's permission classes
(labeling/api/permissions.py).
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Model
from rest_framework.exceptions import NotFound
from rest_framework.views import APIView

from labeling.api.parsers import LimitedJSONParser
from labeling.api.scope import scope_project_id
from labeling.api.throttles import CountsFailedAuthentication
from labeling.models import Project

__all__ = ["BaseApi", "LimitedJSONParser", "get_or_404", "project_or_404"]

M = TypeVar("M", bound=Model)


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
