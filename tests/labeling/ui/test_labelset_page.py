"""The label-set page: managers (and staff) change the label set through a server-rendered form."""

from __future__ import annotations

import pytest
from django.urls import reverse

from labeling import models as m
from labeling.roles import ANNOTATOR, MANAGER, REVIEWER
from labeling.services.memberships import membership_ensure
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return f.ProjectFactory(
        name="Movie reviews",
        labels=[{"name": n, "text": n, "key": str(i + 1)} for i, n in enumerate(["fresh", "rotten", "meh"])],
    )


@pytest.fixture
def manager(project):
    user = f.UserFactory(username="mgr")
    membership_ensure(project=project, user=user, role=MANAGER)
    return user


def test_only_managers_see_the_link_and_open_the_page(client, manager, project):
    url = reverse("ui:labelset", args=[project.pk])
    client.force_login(manager)
    assert url in client.get(reverse("ui:dashboard", args=[project.pk])).content.decode()
    assert client.get(url).status_code == 200
    for role, status in ((ANNOTATOR, 403), (REVIEWER, 403)):
        user = f.UserFactory()
        membership_ensure(project=project, user=user, role=role)
        client.force_login(user)
        assert url not in client.get(reverse("ui:dashboard", args=[project.pk])).content.decode()
        assert client.get(url).status_code == status
        assert client.post(url, {"action": "retire", "label": "meh"}).status_code == status
    client.force_login(f.UserFactory())  # not a member: the project does not exist for them
    assert client.get(url).status_code == 404
    assert client.post(url, {"action": "retire", "label": "meh"}).status_code == 404
    client.logout()
    assert client.get(url).status_code == 302  # to the sign-in page
    project.refresh_from_db()
    assert project.label_names == ["fresh", "rotten", "meh"]


def test_each_change_goes_through_the_service_and_is_audited(client, manager, project):
    client.force_login(manager)
    url = reverse("ui:labelset", args=[project.pk])
    doc = f.DocumentFactory(project=project)
    f.AnnotationFactory(document=doc, label="meh")
    steps = [
        ({"action": "add", "name": "mixed", "text": "Mixed"}, "Added mixed."),
        ({"action": "rename", "label": "meh", "new_name": "so-so"}, "Renamed meh to so-so."),
        ({"action": "merge", "labels": ["so-so"], "into": "mixed"}, "Merged so-so into mixed."),
        ({"action": "split", "label": "mixed", "new_labels": "mixed-up, mixed-down"}, "Split mixed into mixed-up"),
        ({"action": "retire", "label": "mixed-down"}, "Retired mixed-down."),
    ]
    for form, shown in steps:
        response = client.post(url, form)
        assert response.status_code == 302, response.content
        assert shown in client.get(response["Location"]).content.decode()
    project.refresh_from_db()
    assert project.label_names == ["fresh", "rotten", "mixed-up"] and project.label_set_version == 6
    events = m.AuditEvent.objects.filter(action=m.AuditAction.LABEL_SET_CHANGED).values_list("actor_name", flat=True)
    assert list(events) == ["mgr"] * 5
    assert m.Annotation.objects.get(document=doc).label == "mixed"  # kept, sent back to the queue by the split


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"action": "merge", "labels": ["fresh"], "into": "fresh"}, "is the label merged into"),
        ({"action": "rename", "label": "fresh", "new_name": "rotten"}, "already a label of this project"),
        ({"action": "retire", "label": "gone"}, "unknown label"),
        ({"action": "drop"}, "choose one of"),
    ],
)
def test_a_refused_change_is_a_400_with_the_reason_and_changes_nothing(client, manager, project, form, message):
    client.force_login(manager)
    response = client.post(reverse("ui:labelset", args=[project.pk]), form)
    assert response.status_code == 400 and message in response.content.decode()
    project.refresh_from_db()
    assert project.label_set_version == 1 and not m.LabelSetVersion.objects.filter(version__gt=1).exists()


def test_a_multi_label_project_changes_its_set_on_the_page_and_counts_each_label_of_a_set(client):
    project = f.ProjectFactory(
        name="Needs",
        task_type="multi_label",
        labels=[{"name": n, "text": n, "key": str(i + 1)} for i, n in enumerate(["water", "food", "shelter"])],
    )
    manager = f.UserFactory(username="mgr")
    membership_ensure(project=project, user=manager, role=MANAGER)
    client.force_login(manager)
    url = reverse("ui:labelset", args=[project.pk])
    for i, label in enumerate(("water,food", "food", "food,shelter")):
        f.AnnotationFactory(document=f.DocumentFactory(project=project, text=f"FIXTURE: {i}"), label=label)
    page = client.get(url)
    assert page.status_code == 200 and [row["annotations"] for row in page.context["labels"]] == [1, 3, 1]
    done = client.post(url, {"action": "merge", "labels": ["food"], "into": "water"}, follow=True)
    assert done.status_code == 200
    assert "Merged food into water. Label set version 2. 3 labels moved." in done.content.decode()
    assert sorted(m.Annotation.objects.values_list("label", flat=True)) == ["water", "water", "water,shelter"]
    assert m.AnnotationRevision.objects.filter(changed_by=manager).count() == 3
    assert [row["annotations"] for row in done.context["labels"]] == [3, 1]
