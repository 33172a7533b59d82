"""The deployed temperature comes from the blind holdout once it is large enough; its ECE is cross-fitted."""

from __future__ import annotations

import numpy as np
import pytest

from labeling.models import Prediction, Project, Split
from labeling.selectors.models import champion_get
from labeling.services import modeling
from labeling.services.scoring import project_score_pending
from labeling.services.training import recalibration
from modelsvc.artifacts import load_classifier
from modelsvc.calibration import fit_temperature, tempered_samples
from modelsvc.fitting import encode_labels
from modelsvc.holdout import (
    MIN_HOLDOUT_FOR_CALIBRATION,
    OOF_PRIOR_SD_RANDOM,
    OOF_PRIOR_SD_SELECTED,
    holdout_crossfit_probs,
    pool_prior_sd,
    temperature_combine,
)
from tests.factories import UserFactory
from tests.support.data import documents_create, label, rt_snippets
from tests.support.fixtures import labeled_project, shared_embedding_cache, train_now  # noqa: F401

# The tests that train a model on the packaged encoder; the combination tests below are pure numpy.
uses_encoder = pytest.mark.usefixtures("shared_embedding_cache")


@pytest.mark.django_db
@pytest.mark.slow
@uses_encoder
def test_temperature_is_refit_on_a_large_enough_holdout_and_reported_cross_fitted() -> None:
    project = labeled_project(pool=80, holdout=MIN_HOLDOUT_FOR_CALIBRATION + 10, unlabeled=0)
    run = train_now(project)
    champion = champion_get(project_id=project.pk)
    assert run.promoted and champion is not None
    calibration = champion.calibration
    # The holdout fit was applied because it lowered the holdout's 2-fold cross-fitted NLL (the rule).
    choice = calibration["temperature_choice_holdout"]
    assert choice["chosen"] == "fitted" and choice["nll_cross_fitted"] < choice["nll_baseline"]
    assert choice["baseline"] == pytest.approx(calibration["temperature_choice"]["temperature"])
    assert calibration["temperature"] == pytest.approx(choice["temperature"])
    assert calibration["temperature_source"] == "holdout"
    assert calibration["n_temperature_holdout"] == MIN_HOLDOUT_FOR_CALIBRATION + 10
    assert "temperature_pool_out_of_fold" in calibration
    # The artifact the workers load carries the holdout temperature.
    artifact = load_classifier(modeling.storage.artifact_local(champion.artifact_path))
    assert artifact.temperature == pytest.approx(calibration["temperature"])
    assert champion.metrics["calibration_reported"].startswith("holdout, 2-fold cross-fitted")
    assert 0.0 <= champion.metrics["ece"] <= 1.0


@pytest.mark.django_db
@pytest.mark.slow
@uses_encoder
def test_a_small_holdout_keeps_the_pool_temperature() -> None:
    project = labeled_project(pool=80, holdout=MIN_HOLDOUT_FOR_CALIBRATION - 10, unlabeled=0)
    train_now(project)
    champion = champion_get(project_id=project.pk)
    assert champion is not None
    assert "temperature_source" not in champion.calibration
    assert "temperature_choice_holdout" not in champion.calibration
    assert "calibration_reported" not in champion.metrics
    # The pool's out-of-fold temperature went through the rule, and the record says how.
    choice = champion.calibration["temperature_choice"]
    assert champion.calibration["temperature"] == pytest.approx(choice["temperature"])
    assert (choice["chosen"] == "fitted") == (choice["nll_cross_fitted"] < choice["nll_baseline"])
    # 20 holdout items: the stored figures carry their intervals and say they are too few to judge.
    assert champion.metrics["intervals"]["n"] == MIN_HOLDOUT_FOR_CALIBRATION - 10
    assert champion.metrics["intervals"]["too_small"] is True


@pytest.mark.django_db
@pytest.mark.slow
@uses_encoder
def test_cross_fitted_probabilities_never_use_a_temperature_fitted_on_the_same_items() -> None:
    project = labeled_project(pool=80, holdout=MIN_HOLDOUT_FOR_CALIBRATION + 10, unlabeled=0)
    train_now(project)
    champion = champion_get(project_id=project.pk)
    classifier = modeling.classifier_for(champion)
    holdout = list(project.documents.filter(split="holdout").order_by("id"))
    texts = [d.text for d in holdout]
    truth = [d.annotations.first().label for d in holdout]
    result = modeling.classifier_score(classifier, texts)
    probs = holdout_crossfit_probs(
        classifier=classifier,
        embeddings=result.embeddings,
        y=encode_labels(truth, classifier.label_names),
        seed=0,
        prior_sd=recalibration.holdout_prior_sd(project),
    )
    assert probs.shape == (len(texts), 2)
    assert np.allclose(probs.sum(1), 1.0)
    # A temperature only flips near-ties of the sample average: predictions agree almost everywhere.
    assert (probs.argmax(1) == result.probs.argmax(1)).mean() >= 0.9


# --- the precision-weighted combination (pure) ---------------------------------------------------


def _tempered_data(n: int, true_temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits (n, 1, 2) and labels drawn from softmax(logits / true_temperature)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 3.0, size=(n, 1, 2))
    p = tempered_samples(logits, true_temperature).mean(1)
    y = (rng.random(n) < p[:, 1]).astype(np.int64)
    return logits, y


def test_with_random_sampling_a_small_holdout_is_shrunk_toward_the_pool_temperature() -> None:
    prior_sd = pool_prior_sd(random_pool=True)
    assert prior_sd == OOF_PRIOR_SD_RANDOM
    small = temperature_combine(*_tempered_data(40, 1.0, seed=1), prior=1.0, prior_sd=prior_sd)
    assert small.holdout_se > 0.2  # 40 labels cannot pin log T down
    assert 0.0 < small.holdout_weight < 0.6
    assert abs(np.log(small.temperature)) < abs(np.log(small.holdout))  # between the two, nearer the truth
    large = temperature_combine(*_tempered_data(16000, 0.5, seed=2), prior=1.0, prior_sd=prior_sd)
    assert large.holdout_weight > 0.9
    assert large.temperature == pytest.approx(0.5, rel=0.1)  # enough holdout labels overrule the prior


def test_with_an_uncertainty_strategy_a_weak_prior_leaves_the_holdout_nearly_free() -> None:
    # margin sampling: the out-of-fold temperature fitted on boundary cases is ~3x the right one
    assert pool_prior_sd(random_pool=False) == OOF_PRIOR_SD_SELECTED > OOF_PRIOR_SD_RANDOM
    data = _tempered_data(60, 0.5, seed=3)
    selected = temperature_combine(*data, prior=1.5, prior_sd=pool_prior_sd(random_pool=False))
    shrunk = temperature_combine(*data, prior=1.5, prior_sd=pool_prior_sd(random_pool=True))
    assert selected.holdout <= selected.temperature < shrunk.temperature < 1.5
    assert selected.holdout_weight > shrunk.holdout_weight
    assert selected.as_calibration()["temperature_prior_sd"] == OOF_PRIOR_SD_SELECTED


def test_a_small_holdout_that_prefers_one_hot_votes_is_kept_at_a_smooth_temperature() -> None:
    # 40 documents, 20 samples each: 15 samples vote the true class (logit margin 2), 5 the other. As
    # T -> 0 the mean of the tempered samples becomes the vote share 0.75, which beats every smooth
    # temperature on these 40 labels, so the holdout alone runs to the bound.
    votes = np.where(np.arange(20) < 15, 1.0, -1.0)  # (K,)
    logits = np.stack([np.zeros((40, 20)), np.tile(votes, (40, 1))], axis=2)  # (N, K, 2): class 1 true
    y = np.ones(40, dtype=np.int64)
    alone = fit_temperature(logits, y)  # the holdout by itself
    assert alone == pytest.approx(0.05, rel=0.05)
    kept = temperature_combine(logits, y, prior=1.0, prior_sd=pool_prior_sd(random_pool=False))
    assert kept.temperature > 0.2


def test_a_holdout_without_information_keeps_the_prior() -> None:
    logits = np.zeros((40, 1, 2))  # every prediction 50/50: the likelihood is flat in T
    y = np.arange(40) % 2
    estimate = temperature_combine(logits, y, prior=1.3, prior_sd=OOF_PRIOR_SD_RANDOM)
    assert estimate.holdout_weight == 0.0
    assert estimate.temperature == pytest.approx(1.3, rel=1e-3)
    assert estimate.as_calibration()["temperature_holdout_se"] is None  # JSON-safe, no inf


# --- refitting the champion after a rejection ------------------------------------------------------


def _add_holdout_labels(project: Project, n: int, seed: int) -> None:
    known = set(project.documents.values_list("text", flat=True))
    rows = [r for r in rt_snippets(n + 400, seed=seed) if r[0] not in known][:n]
    label(documents_create(project, rows, split=Split.HOLDOUT), UserFactory())


@pytest.mark.django_db
@pytest.mark.slow
@uses_encoder
def test_a_rejected_challenger_refits_the_champions_temperature_on_the_larger_holdout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recalibration, "RECALIBRATE_MIN_CHANGE", 0.0)
    project = labeled_project(pool=80, holdout=MIN_HOLDOUT_FOR_CALIBRATION - 10, unlabeled=20)
    train_now(project)
    champion = champion_get(project_id=project.pk)
    assert champion is not None and "temperature_source" not in champion.calibration  # pool OOF temperature
    project_score_pending(project_id=project.pk)
    old_path, old_temperature = champion.artifact_path, modeling.classifier_for(champion).temperature

    # The holdout grows; the next challenger cannot win (no tolerance can make up a full point).
    _add_holdout_labels(project, 30, seed=5)
    Project.objects.filter(pk=project.pk).update(promotion_tolerance=-1.0)
    project.refresh_from_db()
    run = train_now(project)

    assert not run.promoted
    champion.refresh_from_db()
    assert champion.status == "champion" and champion.artifact_path != old_path
    calibration = champion.calibration
    # The holdout fit was applied because it lowered the holdout's 2-fold cross-fitted NLL (the rule).
    choice = calibration["temperature_choice_holdout"]
    assert choice["chosen"] == "fitted" and choice["nll_cross_fitted"] < choice["nll_baseline"]
    assert choice["baseline"] == pytest.approx(calibration["temperature_choice"]["temperature"])
    assert calibration["temperature"] == pytest.approx(choice["temperature"])
    assert calibration["temperature_source"] == "holdout"
    assert calibration["n_temperature_holdout"] == MIN_HOLDOUT_FOR_CALIBRATION + 20
    assert calibration["temperature_pool_out_of_fold"] == pytest.approx(old_temperature)
    assert "temperature was refit on 50 holdout labels" in run.decision_reason
    # The served classifier and every stored prediction use the new temperature.
    classifier = modeling.classifier_for(champion)
    assert classifier.temperature == pytest.approx(calibration["temperature"])
    assert classifier.temperature != pytest.approx(old_temperature)
    predictions = list(Prediction.objects.filter(model_version=champion).select_related("document"))
    assert predictions
    fresh = modeling.classifier_score(classifier, [p.document.text for p in predictions])
    assert np.allclose([p.confidence for p in predictions], fresh.confidence, atol=1e-5)
    # Without new holdout labels there is nothing to refit.
    assert recalibration.champion_recalibrate(project=project) is None
