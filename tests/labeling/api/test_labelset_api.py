"""Label sets that evolve, over HTTP: add, rename, retire, merge, split; no label lost; bad input stores nothing."""

from __future__ import annotations

import io
import json
import zipfile

import pyarrow.parquet as pq
import pytest

from labeling import roles
from labeling.models import (
    Annotation,
    AnnotationRevision,
    Assignment,
    AssignmentState,
    AuditAction,
    AuditEvent,
    Document,
    LabelSetVersion,
    ModelStatus,
    Project,
    RunTrigger,
    TrainingRun,
)
from labeling.services.memberships import membership_ensure
from tests.labeling.api.conftest import token_client

pytestmark = pytest.mark.django_db


def _url(project: Project, op: str = "") -> str:
    return f"/api/v1/projects/{project.pk}/labelset/{op}"


def _label(client, project, label):
    item = client.post(f"/api/v1/projects/{project.pk}/queue/next").json()
    response = client.post(
        f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": label}, format="json"
    )
    assert response.status_code in (200, 201), response.content
    return item["document"]["id"]


@pytest.fixture
def three(project, docs, champion):
    """The project's set grows to fresh, rotten, meh (by the service, before the labels are given)."""
    from labeling.services.labelset import labelset_add

    labelset_add(project=project, name="meh", by=None)
    project.refresh_from_db()
    return project


@pytest.fixture
def labeled(three, annotator_client, other_client):
    """ann: fresh, rotten, meh; bob: meh, meh, fresh (six documents, one label each)."""
    done = []
    for client, labels in ((annotator_client, ("fresh", "rotten", "meh")), (other_client, ("meh", "meh", "fresh"))):
        for label in labels:
            done.append((_label(client, three, label), label))
    return done


def _snapshot(project):
    """What must never be lost: every annotation, and every label each one has had."""
    annotations = Annotation.objects.filter(document__project=project).count()
    revisions = AnnotationRevision.objects.filter(annotation__document__project=project).count()
    return annotations, revisions


def _retrain_requested(project) -> bool:
    return TrainingRun.objects.filter(project=project, trigger=RunTrigger.LABEL_SET).exists()


def test_add_offers_the_new_label_and_triggers_the_retrain(manager_client, project, docs, champion, annotator_client):
    response = manager_client.post(_url(project, "add"), {"name": "meh", "text": "So-so"}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == 2 and body["operation"] == "add"
    assert [item["name"] for item in body["labels"]] == ["fresh", "rotten", "meh"]
    assert body["labels"][2] == {"name": "meh", "text": "So-so", "key": "3"}
    assert body["retrain_run"] is not None and _retrain_requested(project)
    champion.refresh_from_db()
    assert champion.status == ModelStatus.RETIRED  # trained on the old set: it ranks nothing now
    assert AuditEvent.objects.filter(action=AuditAction.LABEL_SET_CHANGED, project_id=project.pk).count() == 1
    doc_id = _label(annotator_client, project, "meh")
    annotation = Annotation.objects.get(document_id=doc_id)
    assert (annotation.label, annotation.label_set_version) == ("meh", 2)
    history = manager_client.get(_url(project)).json()
    assert history["version"] == 2
    assert [(v["version"], v["operation"]) for v in history["history"]] == [(1, "initial"), (2, "add")]
    assert history["history"][1]["created_by"] == "mgr"


def test_rename_migrates_every_annotation_and_keeps_the_old_label_in_history(manager_client, three, labeled):
    before = _snapshot(three)
    response = manager_client.post(_url(three, "rename"), {"label": "meh", "new_name": "neutral"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["migrated"] == 3
    annotations, revisions = _snapshot(three)
    assert annotations == before[0] and revisions == before[1] + 3  # no label lost; each move is a revision
    labels = sorted(Annotation.objects.filter(document__project=three).values_list("label", flat=True))
    assert labels == ["fresh", "fresh", "neutral", "neutral", "neutral", "rotten"]
    assert set(AnnotationRevision.objects.values_list("previous_label", "new_label")) == {("meh", "neutral")}
    three.refresh_from_db()
    assert three.label_names == ["fresh", "rotten", "neutral"] and three.label_set_version == 3
    assert three.labels[2]["text"] == "neutral"  # a text that was the old name follows the name
    assert _retrain_requested(three)


def test_merge_moves_the_labels_into_the_target(manager_client, three, labeled):
    before = _snapshot(three)
    response = manager_client.post(_url(three, "merge"), {"labels": ["meh"], "into": "rotten"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["migrated"] == 3
    annotations, revisions = _snapshot(three)
    assert annotations == before[0] and revisions == before[1] + 3
    labels = sorted(Annotation.objects.filter(document__project=three).values_list("label", flat=True))
    assert labels == ["fresh", "fresh", "rotten", "rotten", "rotten", "rotten"]
    three.refresh_from_db()
    assert three.label_names == ["fresh", "rotten"]
    version = LabelSetVersion.objects.get(project=three, version=three.label_set_version)
    assert version.data == {"labels": ["meh"], "into": "rotten", "migrated": 3}
    assert _retrain_requested(three)


def test_retire_keeps_the_annotations_and_refuses_new_answers(manager_client, annotator_client, three, labeled):
    before = _snapshot(three)
    response = manager_client.post(_url(three, "retire"), {"label": "meh"}, format="json")
    assert response.status_code == 200, response.content
    assert _snapshot(three) == before
    assert Annotation.objects.filter(document__project=three, label="meh").count() == 3  # kept as given
    three.refresh_from_db()
    assert three.label_names == ["fresh", "rotten"]
    item = annotator_client.post(f"/api/v1/projects/{three.pk}/queue/next").json()
    refused = annotator_client.post(
        f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": "meh"}, format="json"
    )
    assert refused.status_code == 400 and "label" in refused.json()["error"]["fields"]
    assert _retrain_requested(three)
    # A retired name can be neither reused nor merged into.
    again = manager_client.post(_url(three, "add"), {"name": "meh"}, format="json")
    assert again.status_code == 400 and "name" in again.json()["error"]["fields"]


def test_split_sends_the_documents_back_to_the_queue(manager_client, annotator_client, other_client, three, labeled):
    before = _snapshot(three)
    meh_docs = {doc_id for doc_id, label in labeled if label == "meh"}
    response = manager_client.post(
        _url(three, "split"),
        {"label": "meh", "new_labels": ["mixed", {"name": "bland", "text": "Bland", "key": "9"}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["reopened"] == 3
    assert _snapshot(three) == before  # the answers stay, in history, until they are replaced
    three.refresh_from_db()
    assert three.label_names == ["fresh", "rotten", "mixed", "bland"]
    reopened = Document.objects.filter(project=three, is_labeled=False, pk__in=meh_docs)
    assert set(reopened.values_list("pk", flat=True)) == meh_docs
    assert not Assignment.objects.filter(document_id__in=meh_docs, state=AssignmentState.DONE).exists()
    # The queue serves them again (to anyone, their annotators too): a new answer from the same annotator
    # replaces the old one with a revision; another annotator's answer is a new annotation beside it.
    original = dict(Annotation.objects.filter(document__project=three).values_list("pk", "label"))
    created = 0
    for client in (annotator_client, other_client):
        while (item := client.post(f"/api/v1/projects/{three.pk}/queue/next")).status_code == 200:
            assignment = item.json()["assignment"]["id"]
            answer = client.post(f"/api/v1/assignments/{assignment}/annotation", {"label": "mixed"}, format="json")
            assert answer.status_code in (200, 201), answer.content
            created += answer.status_code == 201
    annotations, revisions = _snapshot(three)
    replaced = revisions - before[1]
    assert annotations == before[0] + created  # nothing deleted
    assert set(original) <= set(Annotation.objects.values_list("pk", flat=True))
    still_meh = Annotation.objects.filter(document__project=three, label="meh").count()
    assert still_meh + replaced == 3  # each old answer is either kept as given or in a revision
    assert set(AnnotationRevision.objects.values_list("previous_label", "new_label")) <= {("meh", "mixed")}
    assert Document.objects.filter(pk__in=meh_docs, is_labeled=True).count() == 3
    assert set(
        Annotation.objects.filter(document_id__in=meh_docs, label="mixed").values_list("label_set_version", flat=True)
    ) == {3}
    assert _retrain_requested(three)


@pytest.mark.parametrize(
    ("op", "body", "field"),
    [
        ("rename", {"label": "meh", "new_name": "fresh"}, "new_name"),  # rename to an existing name
        ("rename", {"label": "nope", "new_name": "other"}, "label"),  # unknown label
        ("rename", {"label": "meh", "new_name": "bad name!"}, "new_name"),
        ("merge", {"labels": ["meh"], "into": "gone"}, "into"),  # merge into a retired label
        ("merge", {"labels": ["gone"], "into": "meh"}, "labels"),  # merge a retired label
        ("merge", {"labels": ["fresh", "rotten"], "into": "meh"}, "labels"),  # fewer than 2 left
        ("merge", {"labels": ["meh"], "into": "meh"}, "labels"),
        ("split", {"label": "meh", "new_labels": ["fresh", "other"]}, "new_labels"),  # into an existing label
        ("split", {"label": "meh", "new_labels": ["x", "x"]}, "new_labels"),
        ("split", {"label": "meh", "new_labels": ["gone", "other"]}, "new_labels"),  # a retired name
        ("split", {"label": "meh", "new_labels": ["only"]}, "new_labels"),
        ("retire", {"label": "gone"}, "label"),  # already retired
        ("add", {"name": "fresh"}, "name"),
        ("add", {"name": "new", "key": "1"}, "key"),  # the key is taken
        ("add", {"name": "new", "colour": "red"}, "colour"),  # unknown field
    ],
)
def test_bad_input_names_the_field_and_stores_nothing(manager_client, three, labeled, op, body, field):
    from labeling.services.labelset import labelset_add, labelset_retire

    labelset_add(project=three, name="gone", by=None)
    labelset_retire(project=three, label="gone", by=None)
    three.refresh_from_db()
    state = (three.labels, three.label_set_version, LabelSetVersion.objects.count(), _snapshot(three),
             sorted(Annotation.objects.values_list("pk", "label")), AuditEvent.objects.count(),
             TrainingRun.objects.count())
    response = manager_client.post(_url(three, op), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    three.refresh_from_db()
    assert state == (three.labels, three.label_set_version, LabelSetVersion.objects.count(), _snapshot(three),
                     sorted(Annotation.objects.values_list("pk", "label")), AuditEvent.objects.count(),
                     TrainingRun.objects.count())


def test_only_managers_change_the_set(project, annotator_client, make_user):
    response = annotator_client.post(_url(project, "add"), {"name": "meh"}, format="json")
    assert response.status_code == 403
    outsider = make_user("elsewhere")
    other = Project.objects.create(name="other", labels=project.labels)
    membership_ensure(project=other, user=outsider, role=roles.MANAGER)
    response = token_client(outsider).post(_url(project, "add"), {"name": "meh"}, format="json")
    assert response.status_code == 404
    assert annotator_client.get(_url(project)).status_code == 200  # members read the history
    project.refresh_from_db()
    assert project.label_set_version == 1


def test_export_names_the_version_each_label_was_given_under(admin_client, manager_client, three, labeled):
    manager_client.post(_url(three, "merge"), {"labels": ["meh"], "into": "rotten"}, format="json")
    manager_client.post(_url(three, "add"), {"name": "meh2"}, format="json")
    jsonl = admin_client.get(f"/api/v1/projects/{three.pk}/export?format=jsonl")
    rows = [json.loads(line) for line in b"".join(jsonl.streaming_content).decode().splitlines()]
    assert {r["label_set_version"] for r in rows} == {2}  # all given under v2 (v1 + "meh")
    assert {r["current_label_set_version"] for r in rows} == {4}
    assert all(r["label_current"] for r in rows)
    csv_text = b"".join(admin_client.get(f"/api/v1/projects/{three.pk}/export?format=csv").streaming_content)
    assert b"label_set_version" in csv_text.splitlines()[0]
    table = pq.read_table(io.BytesIO(b"".join(
        admin_client.get(f"/api/v1/projects/{three.pk}/export?format=parquet").streaming_content
    )))
    assert set(table.column("label_set_version").to_pylist()) == {2}
    archive = zipfile.ZipFile(io.BytesIO(b"".join(
        admin_client.get(f"/api/v1/projects/{three.pk}/export?format=hf").streaming_content
    )))
    sets = json.loads(archive.read("label_sets.json"))
    assert sets["current_version"] == 4
    assert [(v["version"], v["operation"]) for v in sets["versions"]] == [
        (1, "initial"), (2, "add"), (3, "merge"), (4, "add")
    ]
    assert [item["name"] for item in sets["versions"][0]["labels"]] == ["fresh", "rotten"]


def test_unknown_keys_of_a_label_entry_are_kept(manager_client, project, docs):
    project.labels = [{**project.labels[0], "description": "Good"}, project.labels[1]]
    project.label_guidelines = {"fresh": "Liked it."}
    project.save(update_fields=["labels", "label_guidelines"])
    response = manager_client.post(_url(project, "rename"), {"label": "fresh", "new_name": "good"}, format="json")
    assert response.status_code == 200, response.content
    project.refresh_from_db()
    assert project.labels[0] == {"name": "good", "text": "good", "key": "1", "description": "Good"}
    assert project.label_guidelines == {"good": "Liked it."}  # the guideline note follows the name
