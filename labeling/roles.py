"""Who may do what: staff are site admins; everyone else acts through a membership of one project.

A membership names one role per (project, user); the capability sets below say which roles may do
what, so the API's permission classes, the UI's decorators and the docs' roles table read one list.
The pre-membership Django groups ``annotator`` and ``ingest`` grant nothing any more: migration 0007
turned their holders into members of every project that existed then (see README, "Upgrading").
"""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet

from labeling.models import Project, ProjectMembership, ProjectRole

MANAGER = str(ProjectRole.MANAGER)
REVIEWER = str(ProjectRole.REVIEWER)
ANNOTATOR = str(ProjectRole.ANNOTATOR)
INGEST = str(ProjectRole.INGEST)

# Capabilities, each the set of project roles that holds it (staff hold them all).
MANAGE = frozenset({MANAGER})  # settings, members, models (promote / rollback / retrain), stats, export
ANNOTATE = frozenset({MANAGER, REVIEWER, ANNOTATOR})  # lease, label, the labeling pages
READ_ALL_LABELS = frozenset({MANAGER, REVIEWER})  # everyone's labels, not only one's own
REVIEW = frozenset({MANAGER, REVIEWER})  # the review queue: lease, decide, comment; agreement figures
FEED = frozenset({MANAGER, INGEST})  # add and read documents, imports, predictions
READ = frozenset(ProjectRole.values)  # the project, its models and training runs

# Where ``project_role`` keeps the roles it read, on the request's user object (one request's lifetime).
_REMEMBERED = "_alabel_project_roles"
_NOT_A_MEMBER = ""


def is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


def remember_role(user: AbstractBaseUser | AnonymousUser, project_id: int, role: str | None) -> None:
    """Record ``user``'s role in ``project_id`` (None: not a member) for the rest of the request."""
    remembered: dict[int, str] = user.__dict__.setdefault(_REMEMBERED, {})
    remembered[int(project_id)] = role or _NOT_A_MEMBER


def project_role(user: AbstractBaseUser | AnonymousUser, project_id: int) -> str | None:
    """``user``'s role in the project, None for a non-member; one query per request and project."""
    if not user.is_authenticated:
        return None
    remembered: dict[int, str] = user.__dict__.setdefault(_REMEMBERED, {})
    key = int(project_id)
    if key not in remembered:
        role = ProjectMembership.objects.filter(project_id=key, user_id=user.pk).values_list("role", flat=True).first()
        remember_role(user, key, role)
    return remembered[key] or None


def is_member(user: AbstractBaseUser | AnonymousUser, project_id: int) -> bool:
    """Staff, or any membership: who may learn that the project exists."""
    return is_admin(user) or project_role(user, project_id) is not None


def can(user: AbstractBaseUser | AnonymousUser, capability: frozenset[str], project_id: int) -> bool:
    if is_admin(user):
        return True
    role = project_role(user, project_id)
    return role is not None and role in capability


def visible_projects(user: AbstractBaseUser | AnonymousUser, capability: frozenset[str] = READ) -> QuerySet[Project]:
    """The projects where ``user`` holds ``capability``: all for staff, some of their memberships' otherwise."""
    if is_admin(user):
        return Project.objects.all()
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(memberships__user_id=user.pk, memberships__role__in=capability)
