"""Role checks for the API: admin (staff), annotator, ingest client (see labeling/roles.py)."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from labeling import roles


class IsAdmin(BasePermission):
    message = "this operation needs an admin (staff) account"

    def has_permission(self, request: Request, view: Any) -> bool:
        return roles.is_admin(request.user)


class IsAnnotator(BasePermission):
    message = "this operation needs the annotator role"

    def has_permission(self, request: Request, view: Any) -> bool:
        return roles.has_role(request.user, roles.ANNOTATOR)


class IsIngest(BasePermission):
    message = "this operation needs the ingest role"

    def has_permission(self, request: Request, view: Any) -> bool:
        return roles.has_role(request.user, roles.INGEST)


class HasAnyRole(BasePermission):
    message = "this account has no role in alabel (annotator, ingest or admin)"

    def has_permission(self, request: Request, view: Any) -> bool:
        return any(roles.has_role(request.user, role) for role in roles.ROLE_GROUPS)
