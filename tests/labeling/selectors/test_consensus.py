"""Final labels: complete labels' consensus under the project's minimum agreement, or a reviewer's decision."""

from __future__ import annotations

import json

import pytest

from labeling.models import Document, ReviewAction, ReviewDecision, ReviewItem, ReviewReason
from labeling.selectors.consensus import final_labels
from labeling.selectors.exports import export_rows
from labeling.selectors.models import majority_labels
from tests import factories as f

pytestmark = pytest.mark.django_db


def labeled(project, labels: list[str], required: int | None = None) -> Document:
    doc = f.DocumentFactory(project=project, labels_required=required or len(labels))
    for i, label in enumerate(labels):
        f.AnnotationFactory(document=doc, annotator=f.UserFactory(username=f"d{doc.pk}u{i}"), label=label)
    return doc


def test_training_labels_follow_the_consensus_rule() -> None:
    project = f.ProjectFactory(min_agreement=0.6)
    single = labeled(project, ["fresh"])
    agreed = labeled(project, ["rotten", "rotten", "fresh"])  # 2/3 >= 0.6
    tie = labeled(project, ["rotten", "fresh"])
    low = labeled(project, ["rotten", "rotten", "fresh", "fresh", "rotten"])  # 3/5 = 0.6: enough
    waiting = labeled(project, ["fresh"], required=2)
    got = {doc_id: label for doc_id, _, label in majority_labels(project=project, split="pool")}
    assert got == {single.pk: "fresh", agreed.pk: "rotten", low.pk: "rotten"}
    finals = final_labels(project=project)
    assert finals[tie.pk].label is None and finals[tie.pk].consensus.reason == "tie"
    assert finals[waiting.pk].label is None and not finals[waiting.pk].complete
    project.min_agreement = 0.7
    assert final_labels(project=project)[low.pk].consensus.reason == "low_agreement"


def test_a_reviewers_latest_decision_wins_and_the_labels_stay() -> None:
    project = f.ProjectFactory()
    tie = labeled(project, ["rotten", "fresh"])
    reviewer = f.UserFactory(username="rev")
    item = ReviewItem.objects.create(project=project, document=tie, reason=ReviewReason.DISAGREEMENT)
    for label in ("rotten", "fresh"):
        ReviewDecision.objects.create(
            item=item, project=project, document=tie, reviewer=reviewer, action=ReviewAction.ACCEPT, label=label
        )
    final = final_labels(project=project)[tie.pk]
    assert (final.label, final.decided_by, final.reviewer) == ("fresh", "reviewer", "rev")
    assert sorted(label for _, label in final.labels) == ["fresh", "rotten"]
    rows = list(export_rows(project))
    assert len(rows) == 2  # every individual label
    assert {(r["label"], r["final_label"], r["decided_by"], r["consensus_label"]) for r in rows} == {
        ("rotten", "fresh", "reviewer:rev", None),
        ("fresh", "fresh", "reviewer:rev", None),
    }
    json.dumps(rows)


def test_the_export_says_the_annotators_decided() -> None:
    project = f.ProjectFactory()
    labeled(project, ["fresh", "fresh"])
    rows = list(export_rows(project))
    assert {(r["final_label"], r["decided_by"], r["consensus_agreement"], r["labels_required"]) for r in rows} == {
        ("fresh", "annotators", 1.0, 2)
    }
