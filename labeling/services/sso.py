"""Single sign-on accounts: who a verified OpenID Connect login is, and the project roles its claim grants.

Accounts are found by the provider's ``(issuer, sub)``, the one identifier OpenID Connect promises is
stable and never reassigned; an email can change hands and, unless the provider says it verified it,
is whatever the user typed. So an email is used once at most, to link a first login to an existing
(pre-provisioned) account, and only when the provider marks it verified (docs/SECURITY.md).

Roles from a claim (``OIDC_ROLES_CLAIM``, e.g. ``groups``): each value ``<prefix>:<project>:<role>``
(project by id, or by its exact name) grants that role; values that name no project or role are ignored;
of several roles for one project the most capable wins. Applied at every login through the membership
service, so each change is recorded like a manager's (with no author: the provider decided): claims
add memberships, change and remove the memberships they added (``claim_managed``), and never touch one
a manager made. The last manager of a project stays, as everywhere.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from labeling.models import Project, ProjectMembership, ProjectRole, SsoIdentity
from labeling.services.memberships import membership_add, membership_change_role, membership_remove

logger = logging.getLogger(__name__)

# The most capable first: of several roles a claim grants in one project, the first of these wins.
ROLE_RANK = (ProjectRole.MANAGER, ProjectRole.REVIEWER, ProjectRole.ANNOTATOR, ProjectRole.INGEST)


class SsoRefused(Exception):
    """The login is valid at the provider but gets no account here (the reason is logged, not shown)."""


@dataclass
class MembershipSync:
    """What one login's role claim changed (project ids)."""

    added: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # the claim wanted a change the membership rules refused


def email_is_verified(claims: Mapping[str, Any]) -> bool:
    """The provider vouches for the email (some send the boolean as a string)."""
    return bool(claims.get("email")) and claims.get("email_verified") in (True, "true", "True")


def role_claim_values(claims: Mapping[str, Any], claim: str) -> list[str]:
    """The claim's values as strings: a list, or one string (some providers send a single group so)."""
    raw = claims.get(claim) if claim else None
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list | tuple):
        return [v for v in raw if isinstance(v, str)]
    return []


def role_grants(*, values: list[str], prefix: str) -> dict[int, str]:
    """``{project id: role}`` from values ``<prefix>:<project id or name>:<role>``; the rest ignored."""
    wanted: dict[str, set[str]] = {}
    for value in values:
        head, sep, rest = value.partition(":")
        project, sep2, role = rest.rpartition(":")
        if head != prefix or not sep or not sep2 or not project or role not in ProjectRole.values:
            continue
        wanted.setdefault(project, set()).add(role)
    ids = {int(p) for p in wanted if p.isdigit()}
    names = {p for p in wanted if not p.isdigit()}
    found = dict(Project.objects.filter(pk__in=ids).values_list("pk", "pk"))
    found.update(Project.objects.filter(name__in=names).values_list("name", "pk"))
    grants: dict[int, str] = {}
    for project, roles in wanted.items():
        key: int | str = int(project) if project.isdigit() else project
        if key not in found:
            logger.info("sso: role claim names no project %r", project)
            continue
        pid = found[key]
        best = min([*roles, *([grants[pid]] if pid in grants else [])], key=ROLE_RANK.index)
        grants[pid] = best
    return grants


@transaction.atomic
def sso_memberships_sync(*, user: Any, grants: dict[int, str]) -> MembershipSync:
    """Make the claim-managed memberships of ``user`` what ``grants`` says; manual ones stay as they are."""
    result = MembershipSync()
    current = {m.project_id: m for m in ProjectMembership.objects.select_for_update().filter(user=user)}
    projects = Project.objects.in_bulk([*grants, *current])
    for pid, role in sorted(grants.items()):
        membership = current.get(pid)
        if membership is None:
            try:
                added = membership_add(project=projects[pid], user=user, role=role, by=None)
            except ValidationError as exc:  # a manager added them a moment ago: theirs, not the claim's
                logger.warning("sso: user %s not added to project %s: %s", user.pk, pid, exc)
                result.kept.append(pid)
                continue
            ProjectMembership.objects.filter(pk=added.pk).update(claim_managed=True)
            result.added.append(pid)
        elif membership.claim_managed and membership.role != role:
            try:
                membership_change_role(project=projects[pid], user=user, role=role, by=None)
                result.changed.append(pid)
            except ValidationError as exc:
                logger.warning("sso: role of user %s in project %s kept: %s", user.pk, pid, exc)
                result.kept.append(pid)
    for pid, membership in sorted(current.items()):
        if membership.claim_managed and pid not in grants:
            try:
                membership_remove(project=projects[pid], user=user, by=None)
                result.removed.append(pid)
            except ValidationError as exc:
                logger.warning("sso: membership of user %s in project %s kept: %s", user.pk, pid, exc)
                result.kept.append(pid)
    return result


def _username_for(*, issuer: str, claims: Mapping[str, Any]) -> str:
    """A free username: the provider's preferred_username, else the email's local part, else a digest."""
    users = get_user_model().objects
    max_length = get_user_model()._meta.get_field("username").max_length - 4
    validate = UnicodeUsernameValidator()
    candidates = [claims.get("preferred_username"), str(claims.get("email") or "").partition("@")[0]]
    digest = "sso-" + hashlib.sha256(f"{issuer} {claims['sub']}".encode()).hexdigest()[:16]
    for base in [*(c for c in candidates if isinstance(c, str) and c), digest]:
        base = base[:max_length]
        try:
            validate(base)
        except ValidationError:
            continue
        for name in [base, *(f"{base}-{n}" for n in range(2, 100))]:
            if not users.filter(username__iexact=name).exists():
                return name
    return digest


def _update_profile(user: Any, claims: Mapping[str, Any]) -> None:
    changed = []
    if email_is_verified(claims) and user.email != claims["email"]:
        user.email, changed = claims["email"], [*changed, "email"]
    for attr, claim in (("first_name", "given_name"), ("last_name", "family_name")):
        value = claims.get(claim)
        if isinstance(value, str) and value and getattr(user, attr) != value[:150]:
            setattr(user, attr, value[:150])
            changed.append(attr)
    if changed:
        user.save(update_fields=changed)


@transaction.atomic
def sso_user_resolve(
    *, issuer: str, claims: Mapping[str, Any], link_verified_email: bool, create_users: bool
) -> Any:
    """The account of a verified login: by ``(issuer, sub)``; else linked by verified email; else new.

    Raises SsoRefused when there is none to give (creation off, or the email matches several accounts).
    """
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise SsoRefused("the provider sent no sub")
    identity = SsoIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if identity is not None:
        user = identity.user
        SsoIdentity.objects.filter(pk=identity.pk).update(last_login_at=timezone.now())
    else:
        user = None
        if link_verified_email and email_is_verified(claims):
            matches = list(get_user_model().objects.filter(email__iexact=claims["email"])[:2])
            if len(matches) > 1:
                raise SsoRefused(f"several accounts have the email of {subject!r}")
            if matches and SsoIdentity.objects.filter(user=matches[0], issuer=issuer).exists():
                raise SsoRefused(f"the account with the email of {subject!r} belongs to another subject")
            user = matches[0] if matches else None
        if user is None:
            if not create_users:
                raise SsoRefused(f"no account for {subject!r} and OIDC_CREATE_USERS is off")
            user = get_user_model().objects.create_user(_username_for(issuer=issuer, claims=claims))
        try:
            with transaction.atomic():
                SsoIdentity.objects.create(user=user, issuer=issuer, subject=subject)
        except IntegrityError:
            # The same first login arrived twice at once: the other request linked it; take its account.
            raise SsoRefused(f"{subject!r} was linked by a concurrent login; sign in again") from None
    _update_profile(user, claims)
    return user
