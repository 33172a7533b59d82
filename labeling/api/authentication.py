"""Token authentication that reads the user in the same statement as the token."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed


class RoleTokenAuthentication(TokenAuthentication):
    """DRF's ``TokenAuthentication``, one query for the token and its user.

    Roles are per project now: ``BaseApi`` reads the caller's membership of the project a URL
    names (one query, remembered on the user object by ``labeling.roles``), so nothing about roles
    is read here.
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        model = self.get_model()
        token = model.objects.select_related("user").filter(key=key).first()
        if token is None:
            raise AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
