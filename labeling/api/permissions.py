"""Role checks for the API, per project (see labeling/roles.py for the capability sets).

``BaseApi`` has already answered 404 to non-members by the time these run, and remembered the
caller's role in the project the URL names (``view.scope_project_id``), so each check is free.
A view whose URL names no project only passes staff through the project-scoped checks.
"""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from labeling import roles


class IsAdmin(BasePermission):
    message = "this operation needs an admin (staff) account"

    def has_permission(self, request: Request, view: Any) -> bool:
        return roles.is_admin(request.user)


class _ProjectCapability(BasePermission):
    capability: frozenset[str] = frozenset()

    def has_permission(self, request: Request, view: Any) -> bool:
        if roles.is_admin(request.user):
            return True
        project_id = getattr(view, "scope_project_id", None)
        return project_id is not None and roles.can(request.user, self.capability, project_id)


class IsProjectMember(_ProjectCapability):
    message = "this operation needs a membership of the project"
    capability = roles.READ


class IsProjectManager(_ProjectCapability):
    message = "this operation needs the project's manager role"
    capability = roles.MANAGE


class IsProjectAnnotator(_ProjectCapability):
    message = "this operation needs the annotator, reviewer or manager role in the project"
    capability = roles.ANNOTATE


class IsProjectIngest(_ProjectCapability):
    message = "this operation needs the ingest or manager role in the project"
    capability = roles.FEED


class IsProjectReviewer(_ProjectCapability):
    message = "this operation needs the reviewer or manager role in the project"
    capability = roles.REVIEW
