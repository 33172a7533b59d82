"""Roles: Django groups for annotators and ingest clients; admins are staff users."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db.models import Exists, OuterRef

ANNOTATOR = "annotator"
INGEST = "ingest"
ROLE_GROUPS = (ANNOTATOR, INGEST)
# Where ``remember`` keeps the roles read with the credentials, for the rest of the request.
_REMEMBERED = "_alabel_roles"


def is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


def has_role(user: AbstractBaseUser | AnonymousUser, role: str) -> bool:
    if not user.is_authenticated:
        return False
    if is_admin(user):
        return True
    remembered = getattr(user, _REMEMBERED, None)
    if remembered is not None:
        return role in remembered
    return user.groups.filter(name=role).exists()  # type: ignore[union-attr]


def role_flags(user_ref: str) -> dict[str, Any]:
    """``has_<role>`` annotations for a queryset whose ``user_ref`` column is a user id."""
    return {f"has_{role}": Exists(Group.objects.filter(name=role, user=OuterRef(user_ref))) for role in ROLE_GROUPS}


def remember(user: AbstractBaseUser, held: set[str]) -> None:
    """Keep the roles read with the credentials on this user object (one request's lifetime)."""
    setattr(user, _REMEMBERED, frozenset(held))


def grant_role(user: AbstractBaseUser, role: str) -> None:
    if role not in ROLE_GROUPS:
        raise ValueError(f"unknown role {role!r}; choose one of {ROLE_GROUPS}")
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)  # type: ignore[attr-defined]
    if hasattr(user, _REMEMBERED):
        delattr(user, _REMEMBERED)
