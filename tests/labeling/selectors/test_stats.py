"""Stats reads that the dashboard reuses."""

from __future__ import annotations

import pytest

from labeling.models import ModelStatus
from labeling.selectors.stats import annotator_throughput, label_counts, learning_curve
from tests.factories import (
    AnnotationFactory,
    DocumentFactory,
    ModelVersionFactory,
    ProjectFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def test_learning_curve_reads_each_model_versions_metrics_and_skips_unfinished_models():
    project = ProjectFactory()
    ModelVersionFactory(
        project=project,
        version=1,
        status=ModelStatus.RETIRED,
        train_label_count=50,
        metrics={"accuracy": 0.7, "macro_f1": 0.65},
    )
    ModelVersionFactory(
        project=project,
        version=2,
        status=ModelStatus.CHAMPION,
        train_label_count=100,
        metrics={"accuracy": 0.8, "macro_f1": 0.78, "holdout_count": 30},
    )
    ModelVersionFactory(project=project, version=3, status=ModelStatus.TRAINING)
    assert [(p["labels"], p["accuracy"], p["macro_f1"]) for p in learning_curve(project)] == [
        (50, 0.7, 0.65),
        (100, 0.8, 0.78),
    ]


def test_label_counts_include_unused_labels_and_throughput_per_annotator():
    project = ProjectFactory()
    ann = UserFactory(username="ann")
    for duration in (1000, 3000, 2000):
        AnnotationFactory(
            document=DocumentFactory(project=project), annotator=ann, label="fresh", duration_ms=duration
        )
    assert label_counts(project)["pool"] == {"fresh": 3, "rotten": 0}
    [row] = annotator_throughput(project)
    assert (row["username"], row["labels"], row["median_duration_ms"]) == ("ann", 3, 2000)
    assert row["labels_per_hour"] >= 1.5  # 3 labels within one or two clock hours
