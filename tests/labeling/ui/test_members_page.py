"""The members page: managers (and staff) manage members through a server-rendered, CSRF-protected form."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from labeling import models as m
from labeling.roles import ANNOTATOR, MANAGER
from labeling.services.memberships import membership_ensure
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return f.ProjectFactory(name="Movie reviews")


@pytest.fixture
def manager(project):
    user = f.UserFactory(username="mgr")
    membership_ensure(project=project, user=user, role=MANAGER)
    return user


def test_the_dashboard_links_managers_to_the_members_page(client, manager, project):
    annotator = f.UserFactory(username="ann")
    membership_ensure(project=project, user=annotator, role=ANNOTATOR)
    url = reverse("ui:members", args=[project.pk])
    client.force_login(manager)
    assert url in client.get(reverse("ui:dashboard", args=[project.pk])).content.decode()
    client.force_login(annotator)
    assert url not in client.get(reverse("ui:dashboard", args=[project.pk])).content.decode()
    assert client.get(url).status_code == 403


def test_a_manager_adds_rerolls_and_removes_through_the_form(client, manager, project):
    newbie = f.UserFactory(username="newbie")
    client.force_login(manager)
    url = reverse("ui:members", args=[project.pk])
    added = client.post(url, {"action": "add", "username": "newbie", "role": "reviewer"})
    assert added.status_code == 302
    page = client.get(added["Location"]).content.decode()
    assert "newbie joined as reviewer." in page and "newbie" in page
    client.post(url, {"action": "change", "user_id": newbie.pk, "role": "annotator"})
    assert m.ProjectMembership.objects.get(user=newbie).role == "annotator"
    client.post(url, {"action": "remove", "user_id": newbie.pk})
    assert not m.ProjectMembership.objects.filter(user=newbie).exists()
    actions = list(m.AuditEvent.objects.filter(target_type="user", target_id=str(newbie.pk)).values_list(
        "action", "actor_name"
    ))
    assert sorted(actions) == [("member.added", "mgr"), ("member.removed", "mgr"), ("member.role_changed", "mgr")]
    table = client.get(url).content.decode()
    for shown in ("added as reviewer", "role changed from reviewer to annotator", "removed (was annotator)"):
        assert shown in table


def test_refusals_are_explained_and_change_nothing(client, manager, project):
    client.force_login(manager)
    url = reverse("ui:members", args=[project.pk])
    before = m.AuditEvent.objects.count()
    for body, words in [
        ({"action": "add", "username": "ghost", "role": "annotator"}, "no active user"),
        ({"action": "remove", "user_id": manager.pk}, "last manager"),
        ({"action": "add", "username": "mgr", "role": "annotator"}, "already a member"),
        ({"action": "promote"}, "action"),
    ]:
        response = client.post(url, body)
        assert response.status_code == 400
        assert words in response.content.decode()
    assert m.AuditEvent.objects.count() == before


def test_the_form_needs_the_csrf_token(manager, project):
    client = Client(enforce_csrf_checks=True)
    client.force_login(manager)
    response = client.post(reverse("ui:members", args=[project.pk]), {"action": "add", "username": "mgr"})
    assert response.status_code == 403


def test_names_are_escaped(client, manager, project):
    membership_ensure(project=project, user=f.UserFactory(username="<b>x</b>"), role=ANNOTATOR)
    client.force_login(manager)
    page = client.get(reverse("ui:members", args=[project.pk])).content.decode()
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
