"""The blind holdout: the deployed temperature fitted on it, and the challenger measured on it.

An uncertainty strategy fills the labeled pool with boundary cases, so a temperature fitted on their
out-of-fold predictions is wrong for the documents the model will actually score (test ECE 0.11-0.13
with margin sampling against 0.03-0.04 with random sampling in the replay, docs/REPLAY.md). The
holdout is drawn at random and labeled blind, so it is representative by construction, but small: from
30 to 100 labels while a project has 300-1,000, and the standard error of log T fitted on 40 of them
is about 0.45 (a factor 1.6 on T). Two things reduce that noise. With random sampling the pool's
labels are representative too, so the pool's out-of-fold temperature is a prior the holdout fit is
shrunk toward (precision weighting in log T, ``temperature_combine``; ``pool_prior_sd``); with an
uncertainty strategy that temperature is biased by the selection (2-3x the test-optimal one with
margin sampling) and the prior is weak. And the service refits the champion's temperature on the
grown holdout whenever the gate rejects a challenger, so a champion that stays for many rounds does
not keep a temperature fitted on its first 30 holdout labels.

The temperature changes a prediction only where the average over MC samples is nearly tied, so the
promotion gate (accuracy) is essentially unaffected; calibration metrics reported on the holdout are
2-fold cross-fitted (each half scored with a temperature fitted on the other half), never measured on
the items they were fitted on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from modelsvc.calibration import (
    LOG_TEMPERATURE_BOUNDS,
    evaluate_predictions,
    fit_temperature,
    log_temperature_prior_penalty,
    temperature_choose,
    tempered_samples,
)
from modelsvc.inference import score_embeddings
from modelsvc.model import Classifier

#: Below this many labeled holdout documents (or one class) the pool's out-of-fold temperature stays.
MIN_HOLDOUT_FOR_CALIBRATION = 30
#: Spread (sd of log T) of the pool's out-of-fold temperature as a prior when the pool labels were drawn
#: at random: then it is biased only because the deployed ensemble of fold heads is not the single fold
#: head whose out-of-fold predictions fitted it, a bias of about -0.1 in log T with a spread well under 0.1
#: (the measurements are in docs/REPLAY.md).
OOF_PRIOR_SD_RANDOM = 0.1
#: The same prior, weak, when an uncertainty strategy chose the pool labels: its out-of-fold temperature
#: is biased by the selection, but 30-100 holdout labels alone often prefer a tiny T (down to the bound:
#: the K samples' one-hot votes fit a small holdout better than any smooth temperature, and the scored
#: documents pay). sd 1.0 (a factor e) leaves the holdout free within the plausible range and rules that
#: regime out; a stronger prior spoiled good holdout fits (docs/REPLAY.md, "Replaying a temperature rule").
OOF_PRIOR_SD_SELECTED = 1.0
_CURVATURE_STEP = 0.02  # in log T


@dataclass(frozen=True)
class TemperatureEstimate:
    """The deployed temperature and what it was combined from (JSON-ready via ``as_calibration``)."""

    temperature: float
    holdout: float  # maximum-likelihood fit on the holdout alone
    holdout_se: float  # standard error of log(holdout), from the NLL's curvature (inf: no information)
    prior: float  # the pool's out-of-fold temperature
    prior_sd: float  # spread granted to log(prior)
    holdout_weight: float  # approximate weight of log(holdout) in log(temperature), 0..1

    def as_calibration(self) -> dict[str, Any]:
        """``temperature_holdout``, ``temperature_holdout_se`` (None: no information) ... for JSON fields."""
        return {
            f"temperature_{k}": None if isinstance(v, float) and not math.isfinite(v) else v
            for k, v in asdict(self).items()
            if k != "temperature"
        }


@dataclass(frozen=True)
class HoldoutAssessment:
    """What ``holdout_assess`` measured on the holdout for a freshly trained classifier."""

    calibration: dict[str, Any] | None  # the refit temperature's calibration entries; None: not refit
    metrics: dict[str, Any]  # evaluate_predictions on the holdout (cross-fitted if the temperature came from it)
    predicted: np.ndarray  # (N,) int, the classifier's predicted class per holdout document


def summed_nll(sample_logits: np.ndarray, y: np.ndarray, log_t: float) -> float:
    """Summed NLL of the mean tempered probabilities at T = exp(log_t); sample_logits (N, K, C), y (N,) int."""
    probs = tempered_samples(sample_logits, math.exp(log_t)).mean(1)  # (N, C)
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).sum())


def log_temperature_se(sample_logits: np.ndarray, y: np.ndarray, temperature: float) -> float:
    """Standard error of log T at the fitted ``temperature``: 1 / sqrt(d2 NLL / d(log T)2), summed NLL.

    sample_logits (N, K, C), y (N,) int. ``inf`` where the curvature is not positive (no information).
    """
    h, log_t = _CURVATURE_STEP, math.log(temperature)
    curvature = (
        summed_nll(sample_logits, y, log_t + h)
        - 2 * summed_nll(sample_logits, y, log_t)
        + summed_nll(sample_logits, y, log_t - h)
    ) / h**2
    return 1.0 / math.sqrt(curvature) if curvature > 0 else math.inf


def temperature_combine(
    sample_logits: np.ndarray, y: np.ndarray, *, prior: float, prior_sd: float
) -> TemperatureEstimate:
    """The holdout's temperature, shrunk toward ``prior`` (sd ``prior_sd`` in log T).

    sample_logits (N, K, C) uncalibrated holdout logits, y (N,) int. T maximizes the
    holdout likelihood times a normal prior on log T (mean log ``prior``, sd ``prior_sd``): a precision
    weighting of the two, so the prior dominates a small holdout and a large holdout dominates the prior.
    """
    holdout = fit_temperature(sample_logits, y)
    se = log_temperature_se(sample_logits, y, holdout)
    log_prior = math.log(prior)

    def objective(log_t: float) -> float:
        return summed_nll(sample_logits, y, log_t) + log_temperature_prior_penalty(log_t, log_prior, prior_sd)

    log_t = float(minimize_scalar(objective, bounds=LOG_TEMPERATURE_BOUNDS, method="bounded").x)
    weight = 0.0 if math.isinf(se) else prior_sd**2 / (prior_sd**2 + se**2)
    return TemperatureEstimate(math.exp(log_t), holdout, se, prior, prior_sd, weight)


def pool_prior_sd(*, random_pool: bool) -> float:
    """How far the pool's out-of-fold temperature is trusted as a prior (sd of log T).

    ``random_pool``: the pool labels were drawn at random (representative), so the prior is tight;
    otherwise an uncertainty strategy chose them and the prior is weak.
    """
    return OOF_PRIOR_SD_RANDOM if random_pool else OOF_PRIOR_SD_SELECTED


def holdout_usable(y: np.ndarray) -> bool:
    """Whether holdout labels y (N,) (indices or names) can fit a temperature: enough of them, 2+ classes."""
    return len(y) >= MIN_HOLDOUT_FOR_CALIBRATION and len(np.unique(y)) >= 2


def pool_temperature(classifier: Classifier) -> float:
    """The pool's out-of-fold temperature, also after the deployed one was refit on the holdout."""
    return float(classifier.calibration.get("temperature_pool_out_of_fold", classifier.temperature))


def holdout_halves(n: int, seed: int) -> np.ndarray:
    """The seeded 2-fold split (N,) of the holdout that the temperature check and the reported metrics share."""
    return np.random.default_rng(seed).permutation(n) % 2


def _labels_with_set(classifier: Classifier, y: np.ndarray) -> np.ndarray:
    """Holdout labels y (N,) int followed by the classifier's ``calibration_set`` labels."""
    extra = classifier.calibration_set
    return np.asarray(y) if extra is None else np.concatenate([np.asarray(y, dtype=np.int64), extra.labels])


def with_calibration_set(classifier: Classifier, logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The holdout's uncalibrated samples (N, K, C) and labels (N,) with the classifier's ``calibration_set``
    appended (its out-of-fold samples cycled to K per document): what the temperature is fitted on."""
    extra = classifier.calibration_set
    if extra is None or not len(extra):
        return logits, y
    k = logits.shape[1] if len(logits) else classifier.config.samples
    samples = np.concatenate([logits.reshape(-1, k, extra.logits.shape[2]), extra.samples(k)])
    return samples, _labels_with_set(classifier, y)


def calibration_usable(classifier: Classifier, y: np.ndarray) -> bool:
    """Whether holdout labels y (N,) int and the classifier's randomly drawn training labels together can fit a
    temperature (``holdout_usable`` on both)."""
    return holdout_usable(_labels_with_set(classifier, y))


def holdout_temperature_fit(
    *, classifier: Classifier, embeddings: np.ndarray, y: np.ndarray, prior_sd: float, seed: int = 0
) -> dict[str, Any] | None:
    """Refit ``classifier.temperature`` on holdout vectors (N, H) with labels y (N,) int.

    Returns the classifier's new calibration, or None (not usable: nothing changed). The classifier's
    ``calibration_set`` (training documents drawn at random, out of fold) joins the holdout in the fit: both
    are random draws from the pool. ``prior_sd``: see ``temperature_combine`` and ``pool_prior_sd``. The fit
    replaces the classifier's temperature only when it lowers the 2-fold cross-fitted NLL of holdout and
    set together (``temperature_choose``, halves from ``seed``); otherwise the current one is kept, and
    ``temperature_choice`` in the calibration says so.
    """
    if not calibration_usable(classifier, y):
        return None
    logits, y_fit = with_calibration_set(classifier, classifier.sample_logits(embeddings), y)  # uncalibrated
    prior = pool_temperature(classifier)
    estimate = temperature_combine(logits, y_fit, prior=prior, prior_sd=prior_sd)
    choice = temperature_choose(
        logits,
        y_fit,
        holdout_halves(len(y_fit), seed),
        baseline=classifier.temperature,
        fit=lambda lg, yy: temperature_combine(lg, yy, prior=prior, prior_sd=prior_sd).temperature,
    )
    classifier.temperature = choice.temperature
    classifier.calibration = {
        **classifier.calibration,
        "temperature": classifier.temperature,
        "temperature_source": "holdout" if choice.chosen == "fitted" else classifier.calibration.get(
            "temperature_source", "pool_out_of_fold"
        ),
        "temperature_choice_holdout": choice.as_record(),
        "temperature_pool_out_of_fold": prior,
        "n_temperature_holdout": len(y),
        "n_temperature_random_pool": len(y_fit) - len(y),
        **estimate.as_calibration(),
    }
    return classifier.calibration


def holdout_crossfit_probs(
    *, classifier: Classifier, embeddings: np.ndarray, y: np.ndarray, seed: int, prior_sd: float
) -> np.ndarray:
    """Calibrated mean probabilities (N, C) for holdout vectors (N, H), labels y (N,) int.

    Each half is tempered by a fit on the other half (with the classifier's ``calibration_set``).
    """
    logits = classifier.sample_logits(embeddings)  # (N, K, C)
    prior = pool_temperature(classifier)
    half = holdout_halves(len(y), seed)  # (N,) 0/1
    probs = np.zeros((len(y), logits.shape[2]))
    for side in (0, 1):
        fit_on, score = half != side, half == side
        fit_logits, fit_y = with_calibration_set(classifier, logits[fit_on], y[fit_on])
        temperature = temperature_combine(fit_logits, fit_y, prior=prior, prior_sd=prior_sd).temperature
        probs[score] = tempered_samples(logits[score], temperature).mean(1)
    return probs


def holdout_assess(
    classifier: Classifier, embeddings: np.ndarray, y: np.ndarray, *, seed: int, prior_sd: float
) -> HoldoutAssessment:
    """Refit the temperature on the holdout when it is usable, then measure the classifier on it.

    embeddings (N, H) of the labeled holdout documents, y (N,) int, N >= 1. ``classifier`` gets the
    refit temperature in place. A temperature fitted on these very documents would flatter its own
    calibration, so then the reported calibration is 2-fold cross-fitted (``holdout_crossfit_probs``).
    """
    refit = holdout_temperature_fit(
        classifier=classifier, embeddings=embeddings, y=y, prior_sd=prior_sd, seed=seed
    )
    res = score_embeddings(classifier, embeddings)
    calibrated = res.probs
    # Kept temperature: it was not fitted on the holdout, so its figures there are honest as they are.
    if refit is not None and refit["temperature_choice_holdout"]["chosen"] == "fitted":
        calibrated = holdout_crossfit_probs(
            classifier=classifier, embeddings=embeddings, y=y, seed=seed, prior_sd=prior_sd
        )
    metrics = evaluate_predictions(res.probs_uncalibrated, calibrated, y, res.uncertainty())
    metrics.pop("n", None)
    if refit is not None and refit["temperature_choice_holdout"]["chosen"] == "fitted":
        metrics["calibration_reported"] = "holdout, 2-fold cross-fitted temperature"
    return HoldoutAssessment(calibration=refit, metrics=metrics, predicted=np.asarray(res.predicted))
