"""Multi-label projects through the API: created with task_type, labeled with a set, bad answers named 400s."""

from __future__ import annotations

import pytest

from labeling.models import Annotation, AnnotationRevision, Project
from tests.labeling.api.conftest import project  # noqa: F401  (a single-label project fixture)

pytestmark = pytest.mark.django_db


def test_a_project_is_created_multi_label_and_its_task_type_is_fixed(admin_client) -> None:
    made = admin_client.post(
        "/api/v1/projects/", {"name": "needs", "labels": ["water", "food"], "task_type": "multi_label"}, format="json"
    )
    assert made.status_code == 201 and made.json()["task_type"] == "multi_label"
    pk = made.json()["id"]
    changed = admin_client.patch(f"/api/v1/projects/{pk}/", {"task_type": "single_label"}, format="json")
    assert changed.status_code == 400 and "task_type" in changed.json()["error"]["fields"]
    assert Project.objects.get(pk=pk).task_type == "multi_label"
    unknown = admin_client.post(
        "/api/v1/projects/", {"name": "x", "labels": ["a", "b"], "task_type": "multi_class"}, format="json"
    )
    assert unknown.status_code == 400 and "task_type" in unknown.json()["error"]["fields"]
    assert not Project.objects.filter(name="x").exists()
    plain = admin_client.post("/api/v1/projects/", {"name": "y", "labels": ["a", "b"]}, format="json")
    assert plain.json()["task_type"] == "single_label"


def _lease(client, project_id: int) -> dict:
    got = client.post(f"/api/v1/projects/{project_id}/queue/next")
    assert got.status_code == 200
    return got.json()


def test_a_set_is_stored_in_label_set_order_and_a_retry_is_idempotent(ml_project, ml_docs, annotator_client) -> None:
    item = _lease(annotator_client, ml_project.pk)
    assert item["task_type"] == "multi_label"
    url = f"/api/v1/assignments/{item['assignment']['id']}/annotation"
    sent = annotator_client.post(url, {"labels": ["shelter", "water"]}, format="json")
    assert sent.status_code == 201, sent.json()
    assert sent.json()["label"] == "water,shelter" and sent.json()["labels"] == ["water", "shelter"]
    again = annotator_client.post(url, {"labels": ["water", "shelter"]}, format="json")
    assert again.status_code == 200 and again.json()["id"] == sent.json()["id"]
    other = annotator_client.post(url, {"labels": ["food"]}, format="json")
    assert other.status_code == 409
    assert Annotation.objects.get().label == "water,shelter"


def test_an_empty_set_is_an_answer(ml_project, ml_docs, annotator_client) -> None:
    item = _lease(annotator_client, ml_project.pk)
    sent = annotator_client.post(
        f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"labels": []}, format="json"
    )
    assert sent.status_code == 201 and sent.json()["labels"] == [] and Annotation.objects.get().label == ""


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"label": "water"}, "label"),  # one name to a multi-label project
        ({"labels": ["water", "zebra"]}, "labels"),  # an unknown label
        ({"labels": ["water", "water"]}, "labels"),  # a label twice
        ({"labels": "water"}, "labels"),  # not a list
        ({"labels": ["water,food"]}, "labels"),  # the separator inside a name
        ({}, "labels"),  # no answer
    ],
)
def test_a_bad_answer_to_a_multi_label_project_is_a_named_400(ml_project, ml_docs, annotator_client, body, field):
    item = _lease(annotator_client, ml_project.pk)
    got = annotator_client.post(f"/api/v1/assignments/{item['assignment']['id']}/annotation", body, format="json")
    assert got.status_code == 400 and field in got.json()["error"]["fields"], got.json()
    assert not Annotation.objects.exists()


def test_a_set_to_a_single_label_project_is_a_named_400(project, annotator_client) -> None:  # noqa: F811
    from tests import factories as f

    f.DocumentFactory(project=project)
    item = _lease(annotator_client, project.pk)
    got = annotator_client.post(
        f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"labels": ["fresh"]}, format="json"
    )
    assert got.status_code == 400 and "labels" in got.json()["error"]["fields"]
    listed = annotator_client.post(
        f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": ["fresh"]}, format="json"
    )
    assert listed.status_code == 400 and "label" in listed.json()["error"]["fields"]
    assert not Annotation.objects.exists()


def test_a_set_is_edited_with_a_revision(ml_project, ml_docs, annotator_client) -> None:
    item = _lease(annotator_client, ml_project.pk)
    made = annotator_client.post(
        f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"labels": ["food"]}, format="json"
    ).json()
    bad = annotator_client.patch(f"/api/v1/annotations/{made['id']}", {"label": "food"}, format="json")
    assert bad.status_code == 400 and "label" in bad.json()["error"]["fields"]
    edited = annotator_client.patch(f"/api/v1/annotations/{made['id']}", {"labels": ["water", "food"]}, format="json")
    assert edited.status_code == 200 and edited.json()["labels"] == ["water", "food"]
    revision = AnnotationRevision.objects.get()
    assert (revision.previous_label, revision.new_label) == ("food", "water,food")
    listed = annotator_client.get(f"/api/v1/projects/{ml_project.pk}/annotations").json()
    assert listed[0]["labels"] == ["water", "food"]
