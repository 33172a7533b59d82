"""Multi-label teams: per-label consensus, set disagreements to review, a reviewer's set, agreement per label."""

from __future__ import annotations

import pytest

from labeling import roles
from labeling.models import ReviewItem, ReviewReason
from labeling.selectors.agreement import annotator_quality, project_agreement
from labeling.selectors.consensus import final_labels
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_update_policy
from tests import factories as f
from tests.labeling.api.conftest import token_client

pytestmark = pytest.mark.django_db


def _label(client, project_id: int, labels: list[str]) -> dict:
    item = client.post(f"/api/v1/projects/{project_id}/queue/next").json()
    got = client.post(f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"labels": labels}, format="json")
    assert got.status_code == 201, got.json()
    return item


def test_two_sets_that_differ_on_a_label_go_to_review_and_a_reviewer_decides_a_set(
    ml_project, ml_docs, annotator_client, other_client
) -> None:
    project_update_policy(project=ml_project, overlap=2, overlap_scope="all")
    first = _label(annotator_client, ml_project.pk, ["water", "food"])
    doc_id = first["document"]["id"]
    second = other_client.post(f"/api/v1/projects/{ml_project.pk}/queue/next").json()
    assert second["document"]["id"] == doc_id  # the overlapped document waits for its second answer
    other_client.post(
        f"/api/v1/assignments/{second['assignment']['id']}/annotation", {"labels": ["water"]}, format="json"
    )
    item = ReviewItem.objects.get(document_id=doc_id)
    assert item.reason == ReviewReason.DISAGREEMENT
    final = final_labels(project=ml_project)[doc_id]
    assert final.label is None and final.consensus.reason == "tie"

    reviewer = f.UserFactory(username="rev")
    membership_ensure(project=ml_project, user=reviewer, role=roles.REVIEWER)
    client = token_client(reviewer)
    shown = client.post(f"/api/v1/projects/{ml_project.pk}/review/next").json()
    assert shown["task_type"] == "multi_label"
    assert sorted(tuple(lab["labels"]) for lab in shown["labels"]) == [("water",), ("water", "food")]
    base = f"/api/v1/projects/{ml_project.pk}/review/items/{item.pk}/decision"
    one = client.post(base, {"label": "water"}, format="json")
    assert one.status_code == 400 and "label" in one.json()["error"]["fields"]
    bad = client.post(base, {"labels": ["water", "lava"]}, format="json")
    assert bad.status_code == 400 and "labels" in bad.json()["error"]["fields"]
    decided = client.post(base, {"labels": ["food", "water"]}, format="json")
    assert decided.status_code == 201
    body = decided.json()
    assert body["final_labels"] == ["water", "food"] and body["decisions"][0]["action"] == "accept"
    assert final_labels(project=ml_project)[doc_id].decided_by == "reviewer"


def test_an_override_is_a_set_no_annotator_gave(ml_project, ml_docs) -> None:
    doc = ml_docs[0]
    doc.labels_required = 2
    doc.save()
    for name, label in (("x1", "water"), ("x2", "food")):
        f.AnnotationFactory(document=doc, annotator=f.UserFactory(username=name), label=label)
    item = ReviewItem.objects.create(project=ml_project, document=doc, reason=ReviewReason.DISAGREEMENT)
    reviewer = f.UserFactory(username="rev")
    membership_ensure(project=ml_project, user=reviewer, role=roles.REVIEWER)
    client = token_client(reviewer)
    client.post(f"/api/v1/projects/{ml_project.pk}/review/next")
    empty = client.post(
        f"/api/v1/projects/{ml_project.pk}/review/items/{item.pk}/decision", {"labels": []}, format="json"
    )
    assert empty.status_code == 201
    assert empty.json()["decisions"][0]["action"] == "override" and empty.json()["final_labels"] == []
    assert final_labels(project=ml_project)[doc.pk].label == ""  # an agreed empty set is a final label


def test_agreed_sets_make_a_consensus_without_review(ml_project, ml_docs) -> None:
    doc = ml_docs[1]
    doc.labels_required = 3
    doc.save()
    for name, label in (("x1", "shelter"), ("x2", "shelter"), ("x3", "food,shelter")):
        f.AnnotationFactory(document=doc, annotator=f.UserFactory(username=name), label=label)
    final = final_labels(project=ml_project)[doc.pk]
    assert final.label == "shelter" and final.decided_by == "annotators"
    assert final.consensus.agreement == pytest.approx(2 / 3)


def _overlapped(project, docs_sets: list[list[str]]) -> None:
    people = [f.UserFactory(username=f"p{i}") for i in range(2)]
    for i, pair in enumerate(docs_sets):
        doc = f.DocumentFactory(project=project, labels_required=2, text=f"FIXTURE: message {i}")
        for person, label in zip(people, pair, strict=True):
            f.AnnotationFactory(document=doc, annotator=person, label=label, duration_ms=1500)


def test_agreement_is_per_label_and_overall_with_intervals(ml_project, admin_client) -> None:
    pairs = [
        ["water", "water"],
        ["food", "food"],
        ["water,food", "water"],
        ["shelter", "shelter"],
        ["", ""],
        ["medical_help", "medical_help"],
        ["water,shelter", "water,shelter"],
        ["food", "food,shelter"],
        ["water", "water"],
        ["medical_help", ""],
        ["food", "food"],
        ["shelter", "shelter"],
    ]
    _overlapped(ml_project, pairs)
    out = project_agreement(project=ml_project, n_boot=50)
    assert out["n_items"] == 12 and out["enough"] and out["task_type"] == "multi_label"
    assert set(out["per_label"]) == {"water", "food", "shelter", "medical_help"}
    assert out["per_label"]["water"]["value"] > out["per_label"]["medical_help"]["value"]
    for figure in (out["alpha"], out["fleiss_kappa"], out["masi_alpha"]):
        assert figure["low"] <= figure["value"] <= figure["high"] and figure["n_items"] == 12
    assert out["per_label_detail"]["water"]["share"] == pytest.approx(8 / 24)
    assert [(p["a"], p["b"]) for p in out["pairwise"]] == [("p0", "p1")]
    api = admin_client.get(f"/api/v1/projects/{ml_project.pk}/agreement?n_boot=50")
    assert api.status_code == 200 and "masi_alpha" in api.json()
    quality = annotator_quality(project=ml_project, n_boot=20)
    p0 = next(a for a in quality["annotators"] if a["annotator"] == "p0")
    assert p0["confusion"]["labels"] == ["not given", "given"] and p0["vs_consensus"]["n_items"] == 12 * 4
