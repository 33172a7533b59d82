"""The project a request is about, and the caller's role in it: the API's membership gate.

Every view whose URL names a project (``project_id``) or an object that belongs to one
(``assignment_id``, ``annotation_id``) answers 404 to an authenticated caller who is not a member of
that project, before any role check, so a non-member cannot even learn that the project exists.

Token clients pay nothing for it: ``scope_sql`` puts the project, the caller's role in it and the
project's row into the token's own statement (labeling/api/authentication.py). Session clients pay
one query, here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.db import connection
from django.db.models import Model, OuterRef, Subquery
from rest_framework.exceptions import NotFound

from labeling import roles
from labeling.models import Annotation, Assignment, Project, ProjectMembership

# URL kwargs naming an object that belongs to a project: the model, and the path to its project id.
OBJECT_SCOPES: dict[str, tuple[type[Model], str]] = {
    "assignment_id": (Assignment, "project_id"),
    "annotation_id": (Annotation, "project_id"),
}
# Where ``remember`` keeps what the token query read, on the request's user object.
_RESOLVED = "_alabel_scope"
_PROJECT = "_alabel_scope_project"
_MAX_ID = 2**63 - 1


def _scope_kwarg(kwargs: dict[str, Any]) -> str | None:
    if "project_id" in kwargs:
        return "project_id"
    return next((kwarg for kwarg in OBJECT_SCOPES if kwarg in kwargs), None)


@cache
def _object_project_sql(kwarg: str) -> str:
    """SQL (one parameter: the object's id) for the project of the object ``kwarg`` names, compiled once."""
    model, path = OBJECT_SCOPES[kwarg]
    sql, params = model._default_manager.filter(pk=0).values(path)[:1].query.sql_with_params()
    assert list(params) == [0], params  # the id is the statement's only parameter
    return str(sql)


def scope_sql(kwargs: dict[str, Any]) -> tuple[str, list[Any]] | None:
    """The URL's project as raw SQL: (a one-row subquery with column ``id``, parameters); None:
    the URL names no project. The token statement (labeling/api/authentication.py) reads it, the
    caller's role in it and the project's row with the token, so it compiles no ORM query per request.
    """
    kwarg = _scope_kwarg(kwargs)
    if kwarg is None:
        return None
    value = int(kwargs[kwarg])
    # An id past bigint matches nothing; as a bound parameter it would fail the whole statement.
    value_or_none = value if value <= _MAX_ID else None
    if kwarg == "project_id":
        return "SELECT CAST(%s AS BIGINT) AS id", [value_or_none]
    return f"SELECT ({_object_project_sql(kwarg)}) AS id", [value_or_none]


def row_instance(model: type[Model], values: Any) -> Any:
    """A ``model`` instance from a raw row of its concrete columns in field order, each value through the
    converters the ORM would apply (the field's and the database backend's: JSON decoded everywhere, and on
    SQLite the aware datetimes and booleans a raw cursor does not give)."""
    fields = model._meta.concrete_fields
    converted = []
    for (col, converters), value in zip(_converters(model, connection.vendor), values, strict=True):
        for convert in converters if value is not None else ():
            value = convert(value, col, connection)
        converted.append(value)
    return model.from_db(connection.alias, [f.attname for f in fields], converted)


@cache
def _converters(model: type[Model], vendor: str) -> list[tuple[Any, list[Any]]]:
    """Per concrete field: (its column expression, the converters a query of it runs), built once per model."""
    out = []
    for field in model._meta.concrete_fields:
        col = field.get_col(model._meta.db_table)
        out.append((col, [*connection.ops.get_db_converters(col), *col.get_db_converters(connection)]))
    return out


def remember_project(user: Any, project: Project | None) -> None:
    """Keep the URL's project, read with the token, for ``scope_project`` (this request only)."""
    if project is not None:
        user.__dict__[_PROJECT] = project


def scope_project(user: Any, project_id: int) -> Project | None:
    """The project read with the caller's token, when it is ``project_id``; None otherwise (read it)."""
    project = user.__dict__.get(_PROJECT)
    return project if project is not None and project.pk == project_id else None


def remember(user: Any, kwargs: dict[str, Any], row: Any) -> None:
    """Keep what the token statement read (``scope_project``, ``scope_role``), for ``scope_project_id``."""
    kwarg = _scope_kwarg(kwargs)
    if kwarg is None:
        return
    project_id = getattr(row, "scope_project", None)
    user.__dict__[_RESOLVED] = (kwarg, str(kwargs[kwarg]), project_id)
    if project_id is not None:
        roles.remember_role(user, project_id, getattr(row, "scope_role", None))


def _not_found(kwarg: str, value: Any) -> NotFound:
    if kwarg == "project_id":
        return NotFound(f"project {value} does not exist")
    return NotFound(f"{OBJECT_SCOPES[kwarg][0]._meta.verbose_name} {value} does not exist")


def scope_project_id(kwargs: dict[str, Any], user: Any) -> int | None:
    """The project the URL is about (None: it names none); NotFound for a non-member or an unknown object."""
    kwarg = _scope_kwarg(kwargs)
    if kwarg is None:
        return None
    resolved = user.__dict__.get(_RESOLVED)
    if resolved is not None and resolved[:2] == (kwarg, str(kwargs[kwarg])):
        project_id = resolved[2]
    elif kwarg == "project_id":
        project_id = int(kwargs[kwarg]) if int(kwargs[kwarg]) <= _MAX_ID else None
    else:  # a session client: the object and the caller's role in its project, one query
        model, path = OBJECT_SCOPES[kwarg]
        member_role = ProjectMembership.objects.filter(project_id=OuterRef(path), user_id=user.pk).values("role")
        row = (
            model._default_manager.filter(pk=kwargs[kwarg])
            .annotate(caller_role=Subquery(member_role[:1]))
            .values_list(path, "caller_role")
            .first()
        )
        project_id = None
        if row is not None:
            project_id = row[0]
            roles.remember_role(user, project_id, row[1])
    if project_id is None or not roles.is_member(user, project_id):
        raise _not_found(kwarg, kwargs[kwarg])
    return int(project_id)
