"""Token authentication (hashed, expiring keys) that reads the caller's role in the URL's project in the
same statement as the token."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from labeling.api import scope
from labeling.models import ApiToken


class RoleTokenAuthentication(TokenAuthentication):
    """django-rest-knox's ``Authorization: Token <key>`` plus the membership gate's read, in one query.

    The key's SHA-512 digest is the row's primary key, so one indexed lookup finds it (knox itself
    scans the rows sharing the key's first characters). Every project-scoped view checks the caller's
    membership right after authenticating; reading the URL's project and the caller's role in it here
    (two subqueries) saves that query on every request.
    """

    _url_kwargs: dict[str, Any] = {}

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        self._url_kwargs = (getattr(request, "parser_context", None) or {}).get("kwargs") or {}
        return super().authenticate(request)

    def authenticate_credentials(self, token: bytes) -> tuple[Any, Any]:
        try:
            key = token.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid token.") from None
        columns = scope.scope_columns(self._url_kwargs, "user_id")
        row = ApiToken.objects.select_related("user").annotate(**columns).filter(digest=hash_token(key)).first()
        if row is None:
            raise AuthenticationFailed("Invalid token.")
        if row.expiry is not None and row.expiry <= timezone.now():
            raise AuthenticationFailed("Token expired: create a new one (manage.py token_create).")
        if not row.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        scope.remember(row.user, self._url_kwargs, row)
        return row.user, row


class RoleTokenScheme(OpenApiAuthenticationExtension):
    """The schema's name for this authentication: ``Authorization: Token <key>``."""

    target_class = RoleTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")
