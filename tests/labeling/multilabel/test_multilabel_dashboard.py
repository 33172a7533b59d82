"""The dashboard's multi-label section: per-label counts, agreement, and what the model recorded (or a note)."""

from __future__ import annotations

import pytest

from labeling.models import ModelStatus
from labeling.selectors.dashboard import dashboard
from labeling.selectors.stats import label_counts
from tests import factories as f
from tests.labeling.api.conftest import project  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def labeled(ml_project, ml_docs):
    people = [f.UserFactory(username=n) for n in ("x1", "x2")]
    answers = [("water,food", "water"), ("", ""), ("shelter", "shelter")]
    for doc, pair in zip(ml_docs, answers, strict=False):
        for person, label in zip(people, pair, strict=True):
            f.AnnotationFactory(document=doc, annotator=person, label=label)
    return ml_project


def test_label_counts_count_each_label_of_a_set(labeled) -> None:
    pool = label_counts(labeled)["pool"]
    assert pool == {"water": 2, "food": 1, "shelter": 2, "medical_help": 0}


def test_the_dashboard_says_when_the_model_recorded_no_multi_label_metrics(labeled) -> None:
    data = dashboard(project=labeled, user=f.UserFactory(is_staff=True))
    ml = data["multi_label"]
    assert data["project"]["task_type"] == "multi_label"
    assert [(row["name"], row["pool"]) for row in ml["labels"]][:3] == [("water", 2), ("food", 1), ("shelter", 2)]
    assert ml["none_applies"] == {"pool": 2, "holdout": 0}
    assert ml["model_note"] == "no model yet"
    f.ModelVersionFactory(project=labeled, version=1, status=ModelStatus.CHAMPION, metrics={"accuracy": 0.5})
    ml = dashboard(project=labeled, user=f.UserFactory(is_staff=True))["multi_label"]
    assert ml["model_note"] == "the champion has recorded no multi-label metrics yet"


def test_the_dashboard_shows_the_models_multi_label_figures(labeled) -> None:
    f.ModelVersionFactory(
        project=labeled,
        version=2,
        status=ModelStatus.CHAMPION,
        metrics={"micro_f1": 0.7, "macro_f1": 0.6, "subset_accuracy": 0.4, "per_label": {"water": {"f1": 0.8}}},
    )
    ml = dashboard(project=labeled, user=f.UserFactory(is_staff=True))["multi_label"]
    assert ml["model"]["micro_f1"] == 0.7 and ml["model"]["subset_accuracy"] == 0.4 and ml["model_note"] is None
    assert ml["labels"][0]["model"] == {"f1": 0.8} and ml["labels"][1]["model"] == {}


def test_a_single_label_dashboard_has_no_multi_label_section(project) -> None:  # noqa: F811
    assert dashboard(project=project, user=f.UserFactory(is_staff=True))["multi_label"] is None
