"""Project membership writes: add, change a role, remove; each one recorded in the audit log.

Rules the API promises (a clear 4xx naming the field, nothing changed): the role is known, a user is
a member once, and a project that has a manager keeps at least one (staff can always step in, but a
team should not lose its manager by a slip).
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from labeling.models import AuditAction, Project, ProjectMembership, ProjectRole
from labeling.services.audit import audit_record


class MembershipNotFoundError(Exception):
    """The user is not a member of the project (the API answers 404)."""


def user_resolve(*, username: str | None = None, user_id: int | None = None) -> Any:
    """The active user named by username or id; a ValidationError naming the field otherwise."""
    if (username is None) == (user_id is None):
        raise ValidationError({"user": "give exactly one of username or user_id"})
    users = get_user_model().objects.filter(is_active=True)
    user = users.filter(username=username).first() if username is not None else users.filter(pk=user_id).first()
    if user is None:
        field, value = ("username", username) if username is not None else ("user_id", user_id)
        raise ValidationError({field: f"no active user {value!r}"})
    return user


def _check_role(role: str) -> None:
    if role not in ProjectRole.values:
        raise ValidationError({"role": f"unknown role {role!r}; choose one of {', '.join(ProjectRole.values)}"})


def _record(
    *, project: Project, member: Any, by: Any, action: str, old_role: str = "", new_role: str = ""
) -> None:
    audit_record(
        actor=by, action=action, project=project, target=member, data={"old_role": old_role, "new_role": new_role}
    )


def _locked(project: Project, user: Any) -> ProjectMembership:
    membership = ProjectMembership.objects.select_for_update().filter(project=project, user=user).first()
    if membership is None:
        raise MembershipNotFoundError(f"{user.username} is not a member of project {project.pk}")
    return membership


def _keep_a_manager(project: Project, membership: ProjectMembership) -> None:
    """Refuse to demote or remove the last manager (the managers are locked, so two requests cannot both pass)."""
    if membership.role != ProjectRole.MANAGER:
        return
    managers = list(
        ProjectMembership.objects.select_for_update()
        .filter(project=project, role=ProjectRole.MANAGER)
        .values_list("pk", flat=True)
    )
    if managers == [membership.pk]:
        raise ValidationError({"role": "the project's last manager stays: make another member manager first"})


@transaction.atomic
def membership_add(*, project: Project, user: Any, role: str, by: Any = None) -> ProjectMembership:
    """Make ``user`` a member with ``role``; a ValidationError if they already are one."""
    _check_role(role)
    try:
        with transaction.atomic():
            membership = ProjectMembership.objects.create(project=project, user=user, role=role, created_by=by)
    except IntegrityError:
        raise ValidationError({"user": f"{user.username} is already a member of this project"}) from None
    _record(project=project, member=user, by=by, action=AuditAction.MEMBER_ADDED, new_role=role)
    return membership


@transaction.atomic
def membership_change_role(*, project: Project, user: Any, role: str, by: Any = None) -> ProjectMembership:
    _check_role(role)
    membership = _locked(project, user)
    if membership.role == role:
        return membership  # nothing changed, nothing to record
    if role != ProjectRole.MANAGER:
        _keep_a_manager(project, membership)
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    _record(project=project, member=user, by=by, action=AuditAction.MEMBER_ROLE_CHANGED, old_role=old, new_role=role)
    return membership


@transaction.atomic
def membership_remove(*, project: Project, user: Any, by: Any = None) -> None:
    membership = _locked(project, user)
    _keep_a_manager(project, membership)
    membership.delete()
    _record(project=project, member=user, by=by, action=AuditAction.MEMBER_REMOVED, old_role=membership.role)


def membership_ensure(*, project: Project, user: Any, role: str, by: Any = None) -> ProjectMembership:
    """Idempotent grant for scripts (demo, replay, benchmarks): add, or change the role if it differs."""
    if ProjectMembership.objects.filter(project=project, user=user).exists():
        return membership_change_role(project=project, user=user, role=role, by=by)
    return membership_add(project=project, user=user, role=role, by=by)
