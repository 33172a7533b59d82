"""Token authentication (hashed, expiring keys) that reads the caller's role in the URL's project in the
same statement as the token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from labeling.api import scope
from labeling.models import ApiToken, Project, ProjectMembership


class RoleTokenAuthentication(TokenAuthentication):
    """django-rest-knox's ``Authorization: Token <key>`` plus the membership gate's read, in one statement.

    The key's SHA-512 digest is the row's primary key, so one indexed lookup finds it (knox itself
    scans the rows sharing the key's first characters). Every project-scoped view checks the caller's
    membership right after authenticating; reading the URL's project, the caller's role in it and the
    project's row here (subqueries and a join) saves those queries on every request. Raw SQL: the ORM
    form of this statement cost ~4 ms of Python per request on the benchmark machine against a 0.2 ms
    round trip (docs/BENCHMARKS.md, "queue/next: cutting the request's work").
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
        row = _token_row(hash_token(key), self._url_kwargs)
        if row is None:
            raise AuthenticationFailed("Invalid token.")
        if row.expiry is not None and row.expiry <= timezone.now():
            raise AuthenticationFailed("Token expired: create a new one (manage.py token_create).")
        if not row.user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        scope.remember(row.user, self._url_kwargs, row)
        scope.remember_project(row.user, getattr(row, "scope_project_row", None))
        return row.user, row


def _columns(model: type[Any], alias: str) -> str:
    return ", ".join(f"{alias}.{connection.ops.quote_name(f.column)}" for f in model._meta.concrete_fields)


def _token_row(digest: str, url_kwargs: dict[str, Any]) -> ApiToken | None:
    """The token with its user (and, for a project-scoped URL, ``scope_project``, ``scope_role`` and
    ``scope_project_row``), one statement; None for an unknown digest."""
    user_model = get_user_model()
    token_fields, user_fields = len(ApiToken._meta.concrete_fields), len(user_model._meta.concrete_fields)
    scoped = scope.scope_sql(url_kwargs)
    select = f"{_columns(ApiToken, 't')}, {_columns(user_model, 'u')}"
    user_pk = connection.ops.quote_name(user_model._meta.pk.column)
    tables = f"{ApiToken._meta.db_table} t JOIN {user_model._meta.db_table} u ON u.{user_pk} = t.user_id"
    params: list[Any] = []
    if scoped is not None:
        project_sql, params = scoped
        select += (
            f", s.id, (SELECT m.role FROM {ProjectMembership._meta.db_table} m"
            " WHERE m.project_id = s.id AND m.user_id = t.user_id LIMIT 1), "
            f"{_columns(Project, 'p')}"
        )
        tables += f" CROSS JOIN ({project_sql}) s LEFT JOIN {Project._meta.db_table} p ON p.id = s.id"
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {select} FROM {tables} WHERE t.digest = %s", [*params, digest])
        row = cursor.fetchone()
    if row is None:
        return None
    token = scope.row_instance(ApiToken, row[:token_fields])
    token.user = scope.row_instance(user_model, row[token_fields : token_fields + user_fields])
    if scoped is not None:
        rest = row[token_fields + user_fields :]
        token.scope_project, token.scope_role = rest[0], rest[1]
        token.scope_project_row = scope.row_instance(Project, rest[2:]) if rest[2] is not None else None
    return token
class RoleTokenScheme(OpenApiAuthenticationExtension):
    """The schema's name for this authentication: ``Authorization: Token <key>``."""

    target_class = RoleTokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix="Token")
