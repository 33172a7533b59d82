"""Single sign-on accounts and claim-managed memberships (labeling.services.sso), on PostgreSQL."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from labeling.models import AuditAction, AuditEvent, ProjectMembership, SsoIdentity
from labeling.services.memberships import membership_add
from labeling.services.sso import (
    SsoRefused,
    email_is_verified,
    role_claim_values,
    role_grants,
    sso_memberships_sync,
    sso_user_resolve,
)
from tests import factories as f

pytestmark = pytest.mark.django_db

ISSUER = "https://idp.example.org/realms/acme"


def resolve(claims: dict, *, link: bool = True, create: bool = True):
    return sso_user_resolve(issuer=ISSUER, claims=claims, link_verified_email=link, create_users=create)


def test_a_first_login_creates_an_account_and_records_the_subject() -> None:
    user = resolve({"sub": "abc-1", "preferred_username": "ada", "email": "ada@example.org",
                    "email_verified": True, "given_name": "Ada", "family_name": "Lovelace"})
    assert (user.username, user.email, user.first_name, user.last_name) == ("ada", "ada@example.org", "Ada", "Lovelace")
    assert not user.has_usable_password()
    identity = SsoIdentity.objects.get(user=user)
    assert (identity.issuer, identity.subject) == (ISSUER, "abc-1")
    # The next login finds the same account by its subject, even with a new email and username.
    again = resolve({"sub": "abc-1", "preferred_username": "ada.l", "email": "ada@new.example.org",
                     "email_verified": True})
    assert again.pk == user.pk
    again.refresh_from_db()
    assert again.email == "ada@new.example.org"
    assert get_user_model().objects.count() == 1


def test_an_unverified_email_never_links_to_an_existing_account() -> None:
    """Matching on an email the provider did not verify would hand the account to whoever typed it."""
    local = f.UserFactory(username="root", email="root@example.org", is_staff=True)
    user = resolve({"sub": "attacker", "preferred_username": "root", "email": "root@example.org",
                    "email_verified": False})
    assert user.pk != local.pk
    assert user.username == "root-2"  # the taken username is not reused either
    assert user.email == ""  # an unverified email is not stored
    assert not SsoIdentity.objects.filter(user=local).exists()


def test_a_verified_email_links_a_pre_provisioned_account_once() -> None:
    local = f.UserFactory(username="grace", email="Grace@Example.org")
    user = resolve({"sub": "g-1", "email": "grace@example.org", "email_verified": True})
    assert user.pk == local.pk
    assert SsoIdentity.objects.get(user=local).subject == "g-1"
    # Another subject with the same verified email does not take the account over.
    with pytest.raises(SsoRefused):
        resolve({"sub": "g-2", "email": "grace@example.org", "email_verified": True})


def test_linking_by_email_can_be_off_and_creation_too() -> None:
    local = f.UserFactory(username="hopper", email="hopper@example.org")
    user = resolve({"sub": "h-1", "email": "hopper@example.org", "email_verified": True}, link=False)
    assert user.pk != local.pk
    with pytest.raises(SsoRefused):
        resolve({"sub": "h-2", "email": "nobody@example.org", "email_verified": True}, create=False)
    assert not SsoIdentity.objects.filter(subject="h-2").exists()


def test_several_accounts_with_the_email_refuse_the_link() -> None:
    f.UserFactory(username="twin1", email="twin@example.org")
    f.UserFactory(username="twin2", email="twin@example.org")
    with pytest.raises(SsoRefused):
        resolve({"sub": "t-1", "email": "twin@example.org", "email_verified": True})


def test_no_subject_no_account() -> None:
    with pytest.raises(SsoRefused):
        resolve({"email": "x@example.org", "email_verified": True})


@pytest.mark.parametrize(
    "claims,verified",
    [({"email": "a@b.c", "email_verified": True}, True), ({"email": "a@b.c", "email_verified": "true"}, True),
     ({"email": "a@b.c"}, False), ({"email": "a@b.c", "email_verified": "yes"}, False),
     ({"email_verified": True}, False)],
)
def test_email_is_verified(claims: dict, verified: bool) -> None:
    assert email_is_verified(claims) is verified


def test_role_grants_follow_the_documented_rule() -> None:
    alpha, beta = f.ProjectFactory(name="alpha"), f.ProjectFactory(name="beta: the sequel")
    values = [
        f"alabel:{alpha.pk}:annotator",
        "alabel:beta: the sequel:reviewer",  # a name with a colon: the role is after the last one
        f"alabel:{alpha.pk}:manager",  # of two roles in one project the most capable wins
        "alabel:no such project:manager",  # ignored
        f"alabel:{beta.pk}:owner",  # unknown role: ignored
        f"other:{beta.pk}:manager",  # another prefix: ignored
        "alabel",
    ]
    assert role_grants(values=values, prefix="alabel") == {alpha.pk: "manager", beta.pk: "reviewer"}
    assert role_claim_values({"groups": "alabel:1:annotator"}, "groups") == ["alabel:1:annotator"]
    assert role_claim_values({"groups": ["a", 3, None, "b"]}, "groups") == ["a", "b"]
    assert role_claim_values({"groups": {"a": 1}}, "groups") == []


def test_claims_add_change_and_remove_only_the_memberships_they_manage() -> None:
    user = f.UserFactory()
    manager = f.UserFactory()
    claimed, manual, other = f.ProjectFactory(), f.ProjectFactory(), f.ProjectFactory()
    membership_add(project=manual, user=user, role="annotator", by=manager)

    first = sso_memberships_sync(user=user, grants={claimed.pk: "annotator", manual.pk: "manager"})
    assert first.added == [claimed.pk]
    roles = dict(ProjectMembership.objects.filter(user=user).values_list("project_id", "role"))
    assert roles == {claimed.pk: "annotator", manual.pk: "annotator"}  # a manager's membership stays theirs
    assert ProjectMembership.objects.get(user=user, project=claimed).claim_managed

    second = sso_memberships_sync(user=user, grants={claimed.pk: "reviewer", other.pk: "ingest"})
    assert (second.added, second.changed, second.removed) == ([other.pk], [claimed.pk], [])
    third = sso_memberships_sync(user=user, grants={})
    assert sorted(third.removed) == sorted([claimed.pk, other.pk])
    assert list(ProjectMembership.objects.filter(user=user).values_list("project_id", flat=True)) == [manual.pk]

    # Every change is recorded by the membership service, with no author: the provider decided.
    history = AuditEvent.objects.filter(project_id=claimed.pk, target_type="user", target_id=str(user.pk))
    history = history.order_by("id")
    assert [(e.action, e.data["old_role"], e.data["new_role"], e.actor_id) for e in history] == [
        (AuditAction.MEMBER_ADDED, "", "annotator", None),
        (AuditAction.MEMBER_ROLE_CHANGED, "annotator", "reviewer", None),
        (AuditAction.MEMBER_REMOVED, "reviewer", "", None),
    ]


def test_the_claim_cannot_remove_a_projects_last_manager() -> None:
    user, project = f.UserFactory(), f.ProjectFactory()
    sso_memberships_sync(user=user, grants={project.pk: "manager"})
    result = sso_memberships_sync(user=user, grants={project.pk: "annotator"})
    assert result.kept == [project.pk]
    assert ProjectMembership.objects.get(user=user, project=project).role == "manager"
    result = sso_memberships_sync(user=user, grants={})
    assert result.kept == [project.pk]
    assert ProjectMembership.objects.filter(user=user, project=project).exists()
