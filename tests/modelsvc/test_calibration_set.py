"""Randomly drawn training labels, kept out of fold beside a classifier: the holdout's temperature fit takes them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from modelsvc.artifacts import ArtifactError, load_classifier, save_classifier
from modelsvc.calibration import tempered_samples
from modelsvc.fitting import TrainResult
from modelsvc.holdout import calibration_usable, holdout_temperature_fit, with_calibration_set
from modelsvc.model import CalibrationSet


def test_out_of_fold_samples_cycle_to_the_holdouts_count_without_changing_their_mean() -> None:
    logits = np.random.default_rng(0).normal(size=(7, 4, 3)).astype(np.float32)  # one fold's 4 draws
    cal = CalibrationSet(logits=logits, labels=np.arange(7) % 3)
    cycled = cal.samples(20)  # the deployed ensemble's 20 samples per holdout document
    assert cycled.shape == (7, 20, 3)
    for t in (0.5, 1.0, 2.0):
        np.testing.assert_allclose(tempered_samples(cycled, t).mean(1), tempered_samples(logits, t).mean(1), rtol=1e-5)
    with pytest.raises(ValueError, match="logits"):
        CalibrationSet(logits=logits, labels=np.zeros(6))


def test_training_keeps_the_out_of_fold_samples_behind_its_probabilities(tiny_trained: TrainResult) -> None:
    assert tiny_trained.oof_logits is not None and tiny_trained.oof_probs is not None
    n, s, c = tiny_trained.oof_logits.shape
    assert (n, c) == tiny_trained.oof_probs.shape and 0 < s < tiny_trained.classifier.config.samples
    probs = tempered_samples(tiny_trained.oof_logits, tiny_trained.classifier.temperature).mean(1)
    np.testing.assert_allclose(probs, tiny_trained.oof_probs, atol=1e-5)


def _with_set(tiny_trained: TrainResult, n: int) -> tuple:
    clf = dataclasses.replace(tiny_trained.classifier, calibration=dict(tiny_trained.classifier.calibration))
    assert tiny_trained.oof_logits is not None
    y = np.array([clf.label_names.index(lab) for lab in ["neg", "pos"] * 30])[:n]
    clf.calibration_set = CalibrationSet(logits=tiny_trained.oof_logits[:n], labels=y)
    return clf, y


def test_a_small_holdout_with_random_draws_fits_a_temperature_on_both(tiny_trained: TrainResult) -> None:
    clf, _ = _with_set(tiny_trained, 40)
    rng = np.random.default_rng(1)
    holdout = rng.normal(size=(10, clf.head.in_dim)).astype(np.float32)
    y = rng.integers(0, 2, size=10)
    assert not calibration_usable(dataclasses.replace(clf, calibration_set=None), y)  # 10 alone: too few
    assert calibration_usable(clf, y)
    logits, both = with_calibration_set(clf, clf.sample_logits(holdout), y)
    assert logits.shape[:2] == (50, clf.config.samples) and both.tolist()[:10] == y.tolist()
    record = holdout_temperature_fit(classifier=clf, embeddings=holdout, y=y, prior_sd=1.0, seed=0)
    assert record is not None
    assert (record["n_temperature_holdout"], record["n_temperature_random_pool"]) == (10, 40)
    assert record["temperature_choice_holdout"]["n"] == 50


def test_the_artifact_keeps_the_set_and_refuses_a_missing_one(tiny_trained: TrainResult, tmp_path: Path) -> None:
    clf, y = _with_set(tiny_trained, 12)
    folder = save_classifier(clf, tmp_path / "a")
    loaded = load_classifier(folder)
    assert loaded.calibration_set is not None
    np.testing.assert_array_equal(loaded.calibration_set.labels, y)
    np.testing.assert_array_equal(loaded.calibration_set.logits, clf.calibration_set.logits)
    assert load_classifier(save_classifier(tiny_trained.classifier, tmp_path / "b")).calibration_set is None
    (folder / "calibration_set.safetensors").unlink()
    with pytest.raises(ArtifactError, match="calibration set"):
        load_classifier(folder)
