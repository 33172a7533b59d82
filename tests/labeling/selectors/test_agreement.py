"""Agreement and quality selectors: overlapped items only, intervals and n, managers' figures."""

from __future__ import annotations

import random

import pytest

from labeling.models import ReviewAction, ReviewDecision, ReviewItem, ReviewReason
from labeling.selectors.agreement import TOO_FEW, annotator_quality, project_agreement, ratings_matrix
from tests import factories as f

pytestmark = pytest.mark.django_db


def overlapped(project, n: int, *, flip: float, seed: int = 0, single: int = 0):
    rng = random.Random(seed)
    people = [f.UserFactory(username=f"p{i}") for i in range(3)]
    for i in range(n):
        truth = rng.choice(["fresh", "rotten"])
        doc = f.DocumentFactory(project=project, labels_required=2, gold_label=truth)
        for person in rng.sample(people, 2):
            label = truth if rng.random() >= flip else ("rotten" if truth == "fresh" else "fresh")
            f.AnnotationFactory(document=doc, annotator=person, label=label, duration_ms=2000 + i)
    for _ in range(single):
        f.AnnotationFactory(document=f.DocumentFactory(project=project), annotator=people[0], label="fresh")
    return people


def test_only_items_with_two_labels_are_rated() -> None:
    project = f.ProjectFactory()
    overlapped(project, 5, flip=0.0, single=4)
    ratings = ratings_matrix(project=project)
    assert ratings.matrix.shape == (5, 3) and ((ratings.matrix >= 0).sum(axis=1) == 2).all()


def test_agreement_has_intervals_and_says_when_too_few_items() -> None:
    project = f.ProjectFactory()
    overlapped(project, 4, flip=0.2)
    few = project_agreement(project=project, n_boot=50)
    assert few["n_items"] == 4 and not few["enough"] and few["note"] == TOO_FEW
    big = f.ProjectFactory()
    overlapped(big, 80, flip=0.1, seed=3)
    report = project_agreement(project=big, n_boot=200)
    alpha = report["alpha"]
    assert report["enough"] and alpha["n_items"] == 80 and alpha["enough"]
    assert alpha["low"] <= alpha["value"] <= alpha["high"] and 0.3 < alpha["value"] < 0.95
    assert set(report["per_label"]) == {"fresh", "rotten"} and set(report["per_annotator"]) == {"p0", "p1", "p2"}
    assert report["fleiss_kappa"]["value"] is not None and len(report["pairwise"]) == 3


def test_quality_compares_each_annotator_with_others_reviewers_and_gold() -> None:
    project = f.ProjectFactory()
    people = overlapped(project, 30, flip=0.1, seed=1)
    doc = people[0].annotations.first().document
    item = ReviewItem.objects.create(project=project, document=doc, reason=ReviewReason.AUDIT)
    ReviewDecision.objects.create(
        item=item, project=project, document=doc, reviewer=f.UserFactory(), action=ReviewAction.OVERRIDE, label="fresh"
    )
    quality = annotator_quality(project=project, n_boot=50)
    assert quality["has_gold"]
    first = next(p for p in quality["annotators"] if p["annotator"] == "p0")
    assert first["vs_consensus"]["n_items"] == first["labels"]  # overlap 2: the other one's label
    assert first["vs_gold"]["accuracy"]["value"] > 0.7
    assert first["vs_reviewers"]["n_items"] == 1
    assert sum(map(sum, first["confusion"]["matrix"])) <= first["labels"]
    assert first["median_seconds"] > 2 and first["labels_per_hour"] > 0
