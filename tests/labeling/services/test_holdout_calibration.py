"""The deployed temperature comes from the blind holdout once it is large enough; its ECE is cross-fitted."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.selectors.models import champion_get
from labeling.services import modeling
from labeling.services.holdout_calibration import MIN_HOLDOUT_FOR_CALIBRATION, holdout_crossfit_probs
from modelsvc.artifacts import load_classifier
from tests.support.fixtures import labeled_project, shared_embedding_cache, train_now  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.slow, pytest.mark.usefixtures("shared_embedding_cache")]


def test_temperature_is_refit_on_a_large_enough_holdout_and_reported_cross_fitted() -> None:
    project = labeled_project(pool=80, holdout=MIN_HOLDOUT_FOR_CALIBRATION + 10, unlabeled=0)
    run = train_now(project)
    champion = champion_get(project_id=project.pk)
    assert run.promoted and champion is not None
    calibration = champion.calibration
    assert calibration["temperature_source"] == "holdout"
    assert calibration["n_temperature_holdout"] == MIN_HOLDOUT_FOR_CALIBRATION + 10
    assert "temperature_pool_out_of_fold" in calibration
    # The artifact the workers load carries the holdout temperature.
    artifact = load_classifier(modeling.storage.artifact_local(champion.artifact_path))
    assert artifact.temperature == pytest.approx(calibration["temperature"])
    assert champion.metrics["calibration_reported"].startswith("holdout, 2-fold cross-fitted")
    assert 0.0 <= champion.metrics["ece"] <= 1.0


def test_a_small_holdout_keeps_the_pool_temperature() -> None:
    project = labeled_project(pool=80, holdout=MIN_HOLDOUT_FOR_CALIBRATION - 10, unlabeled=0)
    train_now(project)
    champion = champion_get(project_id=project.pk)
    assert champion is not None
    assert "temperature_source" not in champion.calibration
    assert "calibration_reported" not in champion.metrics


def test_cross_fitted_probabilities_never_use_a_temperature_fitted_on_the_same_items() -> None:
    project = labeled_project(pool=80, holdout=MIN_HOLDOUT_FOR_CALIBRATION + 10, unlabeled=0)
    train_now(project)
    champion = champion_get(project_id=project.pk)
    classifier = modeling.classifier_for(champion)
    holdout = list(project.documents.filter(split="holdout").order_by("id"))
    texts = [d.text for d in holdout]
    truth = [d.annotations.first().label for d in holdout]
    result = modeling.classifier_score(classifier, texts)
    probs = holdout_crossfit_probs(classifier=classifier, embeddings=result.embeddings, truth=truth, seed=0)
    assert probs.shape == (len(texts), 2)
    assert np.allclose(probs.sum(1), 1.0)
    # A temperature only flips near-ties of the sample average: predictions agree almost everywhere.
    assert (probs.argmax(1) == result.probs.argmax(1)).mean() >= 0.9
