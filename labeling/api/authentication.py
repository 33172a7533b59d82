"""Token authentication that reads the caller's roles in the same statement as the token."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from labeling import roles


class RoleTokenAuthentication(TokenAuthentication):
    """DRF's ``TokenAuthentication`` plus one ``EXISTS`` per role in the token query.

    Every API view checks a role right after authenticating; reading them here saves that query on
    every request (``roles.has_role`` uses what is remembered on the user object).
    """

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        model = self.get_model()
        flags = roles.role_flags("user_id")
        token = model.objects.select_related("user").annotate(**flags).filter(key=key).first()
        if token is None:
            raise AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        roles.remember(token.user, {role for role in roles.ROLE_GROUPS if getattr(token, f"has_{role}")})
        return token.user, token
