"""The project a request is about, and the caller's role in it: the API's membership gate.

Every view whose URL names a project (``project_id``) or an object that belongs to one
(``assignment_id``, ``annotation_id``) answers 404 to an authenticated caller who is not a member of
that project, before any role check, so a non-member cannot even learn that the project exists.

Token clients pay nothing for it: ``scope_columns`` adds the project and the caller's role to the
token's own query (labeling/api/authentication.py). Session clients pay one query, here.
"""

from __future__ import annotations

from typing import Any

from django.db.models import BigIntegerField, Expression, Model, OuterRef, Subquery, Value
from rest_framework.exceptions import NotFound

from labeling import roles
from labeling.models import Annotation, Assignment, ProjectMembership

# URL kwargs naming an object that belongs to a project: the model, and the path to its project id.
OBJECT_SCOPES: dict[str, tuple[type[Model], str]] = {
    "assignment_id": (Assignment, "project_id"),
    "annotation_id": (Annotation, "project_id"),
}
# Where ``remember`` keeps what the token query read, on the request's user object.
_RESOLVED = "_alabel_scope"
_MAX_ID = 2**63 - 1


def _scope_kwarg(kwargs: dict[str, Any]) -> str | None:
    if "project_id" in kwargs:
        return "project_id"
    return next((kwarg for kwarg in OBJECT_SCOPES if kwarg in kwargs), None)


def scope_columns(kwargs: dict[str, Any], user_ref: str) -> dict[str, Expression]:
    """``scope_project`` and ``scope_role`` for a query whose ``user_ref`` column is the caller's id."""
    kwarg = _scope_kwarg(kwargs)
    if kwarg is None:
        return {}
    project: Expression
    if kwarg == "project_id":
        value = int(kwargs[kwarg])
        # An id past bigint matches nothing; as a bound parameter it would fail the whole statement.
        project = Value(value if value <= _MAX_ID else None, output_field=BigIntegerField())
    else:
        model, path = OBJECT_SCOPES[kwarg]
        project = Subquery(model._default_manager.filter(pk=kwargs[kwarg]).values(path)[:1])
    role = ProjectMembership.objects.filter(project_id=project, user_id=OuterRef(user_ref)).values("role")[:1]
    return {"scope_project": project, "scope_role": Subquery(role)}


def remember(user: Any, kwargs: dict[str, Any], row: Any) -> None:
    """Keep what a query annotated with ``scope_columns`` read, for ``scope_project_id``."""
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
