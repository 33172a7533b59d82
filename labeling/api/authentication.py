"""Token authentication that reads the caller's role in the URL's project in the same statement as the token."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from labeling.api import scope


class RoleTokenAuthentication(TokenAuthentication):
    """DRF's ``TokenAuthentication`` plus the membership gate's read, in the token's query.

    Every project-scoped view checks the caller's membership right after authenticating; reading the
    URL's project and the caller's role in it here (two subqueries) saves that query on every request.
    """

    _url_kwargs: dict[str, Any] = {}

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        self._url_kwargs = (getattr(request, "parser_context", None) or {}).get("kwargs") or {}
        return super().authenticate(request)

    def authenticate_credentials(self, key: str) -> tuple[Any, Any]:
        model = self.get_model()
        columns = scope.scope_columns(self._url_kwargs, "user_id")
        token = model.objects.select_related("user").annotate(**columns).filter(key=key).first()
        if token is None:
            raise AuthenticationFailed(_("Invalid token."))
        if not token.user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        scope.remember(token.user, self._url_kwargs, token)
        return token.user, token
