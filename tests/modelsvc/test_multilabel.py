"""Multi-label head: BCE cross-fitting, per-label uncertainty, temperatures, thresholds, metrics, artifacts, gate.

Real rows: the first messages of the ``disaster`` built-in (35 crowd-labeled categories). The vectors
are TF-IDF reduced to 48 dimensions: the head's math is the point here, not the encoder.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from modelsvc import datasets
from modelsvc.artifacts import META_FILE, ArtifactError, load_classifier, save_classifier
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.fitting import TrainingError, TrainResult
from modelsvc.inference import score_multilabel_embeddings
from modelsvc.multilabel import (
    DEFAULT_THRESHOLD,
    MIN_POSITIVES_FOR_THRESHOLD,
    THRESHOLD_RANGE,
    choose_thresholds,
    evaluate_multilabel,
    label_uncertainty,
)
from modelsvc.multilabel_fit import train_multilabel_embeddings
from modelsvc.promotion import multilabel_paired_outcome, promotion_decision

N_TRAIN, N_TEST = 500, 300


@functools.cache
def disaster_vectors() -> tuple[np.ndarray, np.ndarray, list[str]]:
    data = datasets.load_multilabel("disaster")
    n = N_TRAIN + N_TEST
    texts = data.texts[:n]
    x = TfidfVectorizer(min_df=2, sublinear_tf=True).fit_transform(texts)
    emb = TruncatedSVD(48, random_state=0).fit_transform(x).astype(np.float32)
    return emb, data.targets[:n], data.label_names


@functools.cache
def trained() -> TrainResult:
    emb, y, names = disaster_vectors()
    return train_multilabel_embeddings(
        emb[:N_TRAIN],
        y[:N_TRAIN],
        label_names=names,
        encoder_id="tfidf-svd",
        model_config=ModelConfig(hidden_dim=32, samples=8, output="sigmoid"),
        train_config=TrainConfig(folds=4, max_epochs=60, patience=10),
    )


def test_the_disaster_set_loads_35_labels_with_related_as_0_or_1() -> None:
    data = datasets.load_multilabel("disaster")
    assert len(data.label_names) == 35 and "child_alone" not in data.label_names
    assert data.targets.shape == (len(data.texts), 35) and set(np.unique(data.targets)) == {0.0, 1.0}
    assert len(data.texts) > 26_000 and set(data.split) == {"train", "validation", "test"}
    assert 0.5 < float((data.targets.sum(1) >= 2).mean()) < 0.6  # most rows carry 2+ labels
    texts, labels = datasets.load_builtin("disaster")
    assert texts == data.texts and labels[:2] == ["related", "related,aid_related,other_aid,weather_related,storm"]


def test_per_label_uncertainty_splits_total_into_aleatoric_and_epistemic() -> None:
    agree = np.full((1, 4, 2), 0.5)  # every sample says 0.5: all aleatoric
    disagree = np.array([[[0.02, 0.9]], [[0.98, 0.9]]]).transpose(1, 0, 2)  # (1, 2, 2): samples split on label 0
    u_agree, u_dis = label_uncertainty(agree), label_uncertainty(disagree)
    assert np.allclose(u_agree["mutual_info"], 0.0) and np.allclose(u_agree["entropy"], np.log(2))
    assert u_dis["mutual_info"][0, 0] > 0.5 and u_dis["mutual_info"][0, 1] == pytest.approx(0.0)
    assert np.allclose(u_dis["entropy"], u_dis["expected_entropy"] + u_dis["mutual_info"])


def test_thresholds_max_f1_per_label_and_default_for_rare_labels() -> None:
    emb, y, names = disaster_vectors()
    probs = trained().oof_probs
    assert probs is not None
    thresholds, records = choose_thresholds(probs, y[:N_TRAIN])
    positives = y[:N_TRAIN].sum(0)
    for c in range(len(names)):
        assert THRESHOLD_RANGE[0] <= thresholds[c] <= THRESHOLD_RANGE[1]
        if positives[c] < MIN_POSITIVES_FOR_THRESHOLD:
            assert thresholds[c] == DEFAULT_THRESHOLD and records[c]["chosen"] == "default"
    # a chosen threshold is at least as good on its own items as 0.5
    at_default = evaluate_multilabel(probs, probs, y[:N_TRAIN], None, names)
    at_chosen = evaluate_multilabel(probs, probs, y[:N_TRAIN], thresholds, names)
    assert at_chosen["macro_f1"] >= at_default["macro_f1"]


def test_a_cross_fitted_head_beats_the_empty_set_on_unseen_rows_and_reports_metrics() -> None:
    result = trained()
    emb, y, names = disaster_vectors()
    clf = result.classifier
    assert clf.multi_label and result.calibration["folds"] == 4
    assert len(clf.label_temperatures or []) == 35 and all(t > 0 for t in clf.label_temperatures or [])
    assert set(result.calibration["temperature_choices"]) == set(names)
    for key in ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "ece_mean", "example_f1"):
        assert key in result.metrics
    assert result.metrics["intervals"]["subset_accuracy"][0] <= result.metrics["subset_accuracy"]
    scored = score_multilabel_embeddings(clf, emb[N_TRAIN:])
    test = evaluate_multilabel(scored.probs_uncalibrated, scored.probs, y[N_TRAIN:], clf.thresholds, names)
    # "related" alone is the commonest set; the head must find more than that on rows it never saw
    related_only = np.zeros_like(y[N_TRAIN:])
    related_only[:, names.index("related")] = 1
    baseline = evaluate_multilabel(related_only, related_only, y[N_TRAIN:], None, names)
    assert test["micro_f1"] > baseline["micro_f1"]
    assert np.all(scored.score >= 0) and scored.score.shape == (N_TEST,)
    assert np.allclose(scored.score, scored.mutual_info.sum(1))


def test_the_artifact_keeps_output_temperatures_and_thresholds(tmp_path: Path) -> None:
    clf = trained().classifier
    emb, _, names = disaster_vectors()
    save_classifier(clf, tmp_path / "ml")
    loaded = load_classifier(tmp_path / "ml", expected_labels=names)
    assert loaded.multi_label and loaded.thresholds == clf.thresholds
    assert loaded.label_temperatures == clf.label_temperatures
    a = score_multilabel_embeddings(clf, emb[N_TRAIN:])
    b = score_multilabel_embeddings(loaded, emb[N_TRAIN:])
    assert np.allclose(a.probs, b.probs) and (a.predicted == b.predicted).all()

    meta = (tmp_path / "ml" / META_FILE).read_text()
    (tmp_path / "ml" / META_FILE).write_text(meta.replace('"thresholds"', '"thresholds_gone"'))
    with pytest.raises(ArtifactError, match="needs 'thresholds'"):
        load_classifier(tmp_path / "ml")


def test_too_few_items_train_without_calibration_and_bad_targets_are_refused() -> None:
    emb, y, names = disaster_vectors()
    small = train_multilabel_embeddings(
        emb[:5], y[:5], label_names=names, encoder_id="x", train_config=TrainConfig(max_epochs=5)
    )
    assert small.classifier.thresholds == [0.5] * 35 and "skipped" in small.calibration
    with pytest.raises(TrainingError, match="shape"):
        train_multilabel_embeddings(emb[:5], y[:5, :3], label_names=names, encoder_id="x")


def test_the_gate_pairs_items_by_example_f1_and_rejects_a_worse_challenger() -> None:
    emb, y, names = disaster_vectors()
    clf = trained().classifier
    scored = score_multilabel_embeddings(clf, emb[N_TRAIN:])
    worse = scored.probs >= 0.97  # a challenger that predicts almost nothing
    outcome, challenger = multilabel_paired_outcome(scored.predicted, worse, y[N_TRAIN:])
    assert challenger < outcome.champion_accuracy and outcome.champion_only > outcome.challenger_only
    promote, reason = promotion_decision(
        has_champion=True,
        holdout_count=N_TEST,
        holdout_classes=35,
        challenger_accuracy=challenger,
        champion_accuracy=outcome.champion_accuracy,
        challenger_calibration_accuracy=None,
        champion_calibration_accuracy=None,
        tolerance=0.02,
        champion_only_correct=outcome.champion_only,
        challenger_only_correct=outcome.challenger_only,
        measure="example F1",
    )
    assert not promote and "significantly worse" in reason and "example F1" in reason
