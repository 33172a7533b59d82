"""Roles: Django groups for annotators and ingest clients; admins are staff users."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group

ANNOTATOR = "annotator"
INGEST = "ingest"
ROLE_GROUPS = (ANNOTATOR, INGEST)


def is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(user.is_authenticated and (user.is_staff or user.is_superuser))


def has_role(user: AbstractBaseUser | AnonymousUser, role: str) -> bool:
    if not user.is_authenticated:
        return False
    if is_admin(user):
        return True
    return user.groups.filter(name=role).exists()  # type: ignore[union-attr]


def grant_role(user: AbstractBaseUser, role: str) -> None:
    if role not in ROLE_GROUPS:
        raise ValueError(f"unknown role {role!r}; choose one of {ROLE_GROUPS}")
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)  # type: ignore[attr-defined]
