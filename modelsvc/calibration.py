"""Calibration (temperature scaling, uncertainty -> error-probability maps) and evaluation metrics.

Temperature scaling divides every sample's logits by one scalar T before the softmax, then
averages the samples: ``p̄ = mean_k softmax(z_k / T)``. T is fitted by minimizing the NLL of p̄ on
the held-out calibration part. ECE uses 15 equal-width bins over the top-label confidence.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.stats import binomtest, bootstrap
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, log_loss, roc_auc_score

N_BINS = 15
#: The range every temperature fit searches (and the replay's diagnosis grid spans).
TEMPERATURE_BOUNDS = (0.05, 20.0)
LOG_TEMPERATURE_BOUNDS = (float(np.log(TEMPERATURE_BOUNDS[0])), float(np.log(TEMPERATURE_BOUNDS[1])))


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def tempered_samples(sample_logits: np.ndarray, temperature: float) -> np.ndarray:
    """(N, K, C) logits -> (N, K, C) probabilities at temperature T."""
    return softmax(np.asarray(sample_logits, dtype=np.float64) / temperature)


def _nll(probs: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    per_item = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))
    if weights is None:
        return float(per_item.mean())
    return float((per_item * weights).sum() / weights.sum())


#: An importance weight is clipped to [1 / IMPORTANCE_CLIP, IMPORTANCE_CLIP] before normalising: a
#: label drawn with a tiny probability would otherwise carry the whole fit (the variance of an
#: importance-weighted mean grows with the largest weight).
IMPORTANCE_CLIP = 10.0


def importance_weights(probability: np.ndarray, pool_size: np.ndarray, *, clip: float = IMPORTANCE_CLIP) -> np.ndarray:
    """Importance weights (N,) that turn a mean over actively drawn labels into a pool-level mean.

    probability (N,): the probability with which the queue's draw picked each labeled item, NaN where
    none was recorded (a uniform draw: cold start, or a deterministic strategy before the switch), which
    counts as 1 / pool size; pool_size (N,): how many items that draw chose among. The raw weight is
    1 / (pool_size * probability) (1 for a uniform draw; its mean under the draw is 1), clipped to
    [1/clip, clip] and normalised to mean 1.
    """
    q = np.asarray(probability, dtype=np.float64)
    n = np.asarray(pool_size, dtype=np.float64)
    if q.shape != n.shape or q.ndim != 1:
        raise ValueError(f"probability {q.shape} and pool_size {n.shape} must be the same (N,)")
    if len(q) == 0:
        return np.ones(0)
    known = np.isfinite(q) & (q > 0) & np.isfinite(n) & (n > 0)
    raw = np.ones(len(q))
    raw[known] = 1.0 / (n[known] * q[known])
    # 1 / (N q) has mean 1 under the draw itself, so the clip is absolute: relative to the sample mean, one
    # tiny q would lift the mean and push every other weight to the lower bound.
    w = np.clip(raw, 1.0 / clip, clip)
    return np.asarray(w / w.mean())


def effective_sample_size(weights: np.ndarray) -> float:
    """Kish's effective number of items (sum w)^2 / sum w^2 of weights (N,)."""
    w = np.asarray(weights, dtype=np.float64)
    return float(w.sum() ** 2 / (w**2).sum()) if len(w) else 0.0


def fit_temperature(sample_logits: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """T in [0.05, 20] minimizing the (weighted) NLL of the mean tempered probabilities; 1.0 when y is empty.

    sample_logits (N, K, C), y (N,) int, weights (N,) >= 0 or None (all 1): an item's share of the NLL.
    """
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return 1.0
    w = None if weights is None else np.asarray(weights, dtype=np.float64)

    def objective(log_t: float) -> float:
        return _nll(tempered_samples(sample_logits, float(np.exp(log_t))).mean(1), y, w)

    res = minimize_scalar(objective, bounds=LOG_TEMPERATURE_BOUNDS, method="bounded")
    t = float(np.exp(res.x))
    return t if objective(res.x) <= objective(0.0) else 1.0


#: (sample_logits (N, K, C), y (N,)) -> T; called with a third argument, weights (N,), by a weighted choice.
TemperatureFit = Callable[..., float]


@dataclass(frozen=True)
class TemperatureChoice:
    """Which temperature is applied: a fitted one only where it lowers the cross-fitted NLL.

    ``nll_fitted`` scores every group of items at a temperature fitted on the OTHER groups (so the fit
    never sees what it is judged on); ``nll_baseline`` scores them at the temperature kept otherwise
    (1, or the one already deployed). Both are mean NLL per item.
    """

    temperature: float  # the one applied: ``candidate`` or ``baseline``
    candidate: float  # fitted on all the items
    baseline: float
    chosen: str  # "fitted" or "baseline"
    nll_baseline: float
    nll_fitted: float
    n: int
    groups: int
    # Kish effective n of the importance weights; None: unweighted (every item counts once).
    effective_n: float | None = None

    def as_record(self) -> dict[str, Any]:
        """JSON-ready, for a run's calibration record."""
        return {
            "weighted": self.effective_n is not None,
            "effective_n": self.effective_n,
            "chosen": self.chosen,
            "temperature": self.temperature,
            "candidate": self.candidate,
            "baseline": self.baseline,
            "nll_baseline": self.nll_baseline,
            "nll_cross_fitted": self.nll_fitted,
            "n": self.n,
            "groups": self.groups,
            "rule": "a fitted temperature is applied only when it lowers the cross-fitted NLL",
        }


def temperature_choose(
    sample_logits: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    *,
    baseline: float = 1.0,
    fit: TemperatureFit = fit_temperature,
    weights: np.ndarray | None = None,
) -> TemperatureChoice:
    """Fit a temperature on all items, and apply it only if it beats ``baseline`` out of sample.

    sample_logits (N, K, C), y (N,) int, groups (N,) int: the cross-fitting groups (the folds, or a
    seeded split). Each group is scored at ``fit`` on the other groups; the candidate is kept only when
    that cross-fitted NLL is below the NLL at ``baseline``. An in-sample fit always lowers the NLL a
    little (one free parameter buys about half a nat by chance), so an in-sample check alone lets
    temperatures through that make unseen documents worse (docs/MODELSVC.md, "Calibration that never
    makes things worse").

    ``weights`` (N,) (``importance_weights``): each item's share in the fit and in both NLLs, so that
    under a stochastic acquisition both estimate the NLL over the pool rather than over the items the
    strategy preferred; None weighs every item once (a random holdout needs no weights).
    """
    y = np.asarray(y, dtype=np.int64)
    groups = np.asarray(groups)
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and w.shape != y.shape:
        raise ValueError(f"weights {w.shape} must match y {y.shape}")

    def fit_on(mask: np.ndarray) -> float:
        return fit(sample_logits[mask], y[mask]) if w is None else fit(sample_logits[mask], y[mask], w[mask])

    n = len(y)
    ess = None if w is None else effective_sample_size(w)
    candidate = fit_on(np.ones(n, dtype=bool))
    ids = np.unique(groups)
    if n == 0:
        return TemperatureChoice(baseline, candidate, baseline, "baseline", 0.0, 0.0, 0, 0, ess)
    ones = np.ones(n) if w is None else w
    nll_baseline = _nll(tempered_samples(sample_logits, baseline).mean(1), y, ones)
    if len(ids) < 2:
        return TemperatureChoice(
            baseline, candidate, baseline, "baseline", nll_baseline, nll_baseline, n, len(ids), ess
        )
    total = 0.0
    for g in ids:
        held = groups == g
        t = fit_on(~held)
        total += _nll(tempered_samples(sample_logits[held], t).mean(1), y[held], ones[held]) * ones[held].sum()
    nll_fitted = total / ones.sum()
    chosen = "fitted" if nll_fitted < nll_baseline else "baseline"
    temperature = candidate if chosen == "fitted" else baseline
    return TemperatureChoice(temperature, candidate, baseline, chosen, nll_baseline, nll_fitted, n, len(ids), ess)


def log_temperature_prior_penalty(log_t: Any, log_prior: float, prior_sd: float) -> Any:
    """Negative log of a normal prior on log T (mean ``log_prior``, sd ``prior_sd``), up to a constant.

    Added to a summed NLL it gives the posterior objective of a temperature shrunk toward a prior;
    ``log_t`` may be a float or an array of grid points.
    """
    return (log_t - log_prior) ** 2 / (2 * prior_sd**2)


def fit_error_mapping(score: np.ndarray, is_error: np.ndarray, kind: str) -> dict[str, Any] | None:
    """Map an uncertainty score (N,) to P(error) (isotonic or Platt); None if only one outcome seen."""
    score = np.asarray(score, dtype=np.float64)
    is_error = np.asarray(is_error, dtype=np.int64)
    if kind == "none" or len(np.unique(is_error)) < 2:
        return None
    if kind == "isotonic":
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(score, is_error)
        return {"kind": "isotonic", "x": iso.X_thresholds_.tolist(), "y": iso.y_thresholds_.tolist()}
    if kind == "platt":
        lr = LogisticRegression().fit(score[:, None], is_error)
        return {"kind": "platt", "a": float(lr.coef_[0, 0]), "b": float(lr.intercept_[0])}
    raise ValueError(f"unknown error mapping {kind!r}")


def apply_error_mapping(mapping: dict[str, Any], score: np.ndarray) -> np.ndarray:
    """P(error) (N,) for uncertainty scores (N,) under a mapping from ``fit_error_mapping``."""
    s = np.asarray(score, dtype=np.float64)
    if mapping["kind"] == "isotonic":
        return np.interp(s, np.asarray(mapping["x"]), np.asarray(mapping["y"]))
    return 1.0 / (1.0 + np.exp(-(mapping["a"] * s + mapping["b"])))


def reliability_bins(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> list[dict[str, float]]:
    """Per equal-width confidence bin: lower, upper, count, mean confidence, accuracy."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        sel = idx == b
        count = int(sel.sum())
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "confidence": float(conf[sel].mean()) if count else 0.0,
                "accuracy": float(correct[sel].mean()) if count else 0.0,
            }
        )
    return bins


def ece_mce(probs: np.ndarray, y: np.ndarray, n_bins: int = N_BINS) -> tuple[float, float]:
    """Expected and maximum calibration error of the top label."""
    bins = reliability_bins(probs, y, n_bins)
    n = max(len(y), 1)
    gaps = [(b["count"], abs(b["accuracy"] - b["confidence"])) for b in bins if b["count"]]
    ece = sum(c * g for c, g in gaps) / n
    mce = max((g for _, g in gaps), default=0.0)
    return float(ece), float(mce)


def ece_noise_floor(probs: np.ndarray, *, n_bins: int = N_BINS, draws: int = 200, seed: int = 0) -> float:
    """Expected ECE of a *perfectly calibrated* model with these probabilities (N, C) on N documents.

    Labels are drawn from the model's own probabilities, y* ~ Categorical(p_i), ``draws`` times; the
    mean ECE over the draws is what sampling noise alone gives on a test set of this size. On 1,000
    documents of a ~0.7-accurate binary model it is about 0.03: an ECE below that cannot be told
    apart from perfect calibration.
    """
    rng = np.random.default_rng(seed)
    cum = np.cumsum(np.asarray(probs, dtype=np.float64), axis=1)  # (N, C)
    values = []
    for _ in range(draws):
        u = rng.random((cum.shape[0], 1)) * cum[:, -1:]
        y_star = (u > cum).sum(axis=1)  # (N,) inverse-CDF draw per document
        values.append(ece_mce(probs, y_star, n_bins)[0])
    return float(np.mean(values))


#: Below this many labeled items an accuracy or ECE is too small to judge: it is shown with its
#: interval and that note, never bare (95 % Wilson interval of an accuracy of 0.8 on 100 items: 0.71-0.87).
MIN_N_TO_JUDGE = 100
#: Bootstrap resamples behind an ECE interval.
ECE_INTERVAL_RESAMPLES = 200
INTERVAL_LEVEL = 0.95


def accuracy_interval(correct: int, n: int, *, level: float = INTERVAL_LEVEL) -> tuple[float, float]:
    """Wilson score interval of ``correct`` right out of ``n`` (scipy); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    ci = binomtest(int(correct), int(n)).proportion_ci(confidence_level=level, method="wilson")
    return float(ci.low), float(ci.high)


def ece_interval(
    probs: np.ndarray, y: np.ndarray, *, level: float = INTERVAL_LEVEL,
    resamples: int = ECE_INTERVAL_RESAMPLES, seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the ECE of probs (N, C) with labels y (N,) (scipy, items resampled).

    ECE is biased upward on few items (even a perfectly calibrated model shows one, ``ece_noise_floor``),
    so the interval says how far the figure moves with the sample, not that the truth lies in it.
    """
    y = np.asarray(y, dtype=np.int64)
    if len(y) < 2:
        value = ece_mce(probs, y)[0] if len(y) else 0.0
        return float(value), float(value)
    res = bootstrap(
        (np.arange(len(y)),),
        lambda idx: ece_mce(probs[idx], y[idx])[0],
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        vectorized=False,
        random_state=np.random.default_rng(seed),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def small_sample_summary(probs: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Intervals of the accuracy and ECE of probs (N, C) on labels y (N,), their n, and whether n is too small.

    ``{"n", "level", "min_n", "too_small", "accuracy": [lo, hi], "ece": [lo, hi], "ece_noise_floor"}``;
    every page and API that shows the accuracy or ECE shows these beside it.
    """
    y = np.asarray(y, dtype=np.int64)
    n = int(len(y))
    correct = int((probs.argmax(axis=1) == y).sum()) if n else 0
    return {
        "n": n,
        "level": INTERVAL_LEVEL,
        "min_n": MIN_N_TO_JUDGE,
        "too_small": n < MIN_N_TO_JUDGE,
        "accuracy": list(accuracy_interval(correct, n)),
        "ece": list(ece_interval(probs, y)),
        # What a perfectly calibrated model with these confidences shows on n items: about 0.2-0.3 on 10.
        "ece_noise_floor": ece_noise_floor(probs) if n else None,
    }


def brier(probs: np.ndarray, y: np.ndarray) -> float:
    """Multi-class Brier score: mean over documents of sum_c (p_c - 1[y = c])^2."""
    onehot = np.eye(probs.shape[1])[y]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def auroc_error(score: np.ndarray, is_error: np.ndarray) -> float | None:
    """AUROC of ``score`` (higher = more uncertain) for detecting errors; None if undefined."""
    if len(np.unique(is_error)) < 2:
        return None
    return float(roc_auc_score(is_error, score))


# Which uncertainty score ``auroc_error`` (the headline figure) refers to.
PRIMARY_ERROR_SCORE = "entropy"


def evaluate_predictions(
    probs_uncal: np.ndarray,
    probs_cal: np.ndarray,
    y_true: np.ndarray,
    uncertainty: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Metrics of a labeled set.

    probs_uncal, probs_cal: (N, C) mean probabilities before / after calibration; y_true (N,) int;
    uncertainty: {name: (N,)} with higher = more uncertain, except ``margin`` (negated here).
    ``auroc_error`` is the AUROC of the calibrated predictive entropy for detecting errors.
    """
    y = np.asarray(y_true, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("cannot evaluate an empty set")
    c = probs_cal.shape[1]
    pred = probs_cal.argmax(axis=1)
    is_error = (pred != y).astype(np.int64)
    ece, mce = ece_mce(probs_cal, y)
    ece_u, mce_u = ece_mce(probs_uncal, y)
    aurocs = {name: auroc_error(-s if name == "margin" else s, is_error) for name, s in uncertainty.items()}
    clipped = np.clip(probs_cal, 1e-12, 1.0)
    return {
        "n": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=np.arange(c), zero_division=0)),
        "ece": ece,
        "ece_uncalibrated": ece_u,
        "mce": mce,
        "mce_uncalibrated": mce_u,
        "nll": float(log_loss(y, clipped / clipped.sum(1, keepdims=True), labels=np.arange(c))),
        "nll_uncalibrated": _nll(probs_uncal, y),
        "brier": brier(probs_cal, y),
        "auroc_error": aurocs.get(PRIMARY_ERROR_SCORE),
        "auroc_error_score": PRIMARY_ERROR_SCORE,
        "auroc_by_score": aurocs,
        "intervals": small_sample_summary(probs_cal, y),
        "reliability": reliability_bins(probs_cal, y),
        "reliability_uncalibrated": reliability_bins(probs_uncal, y),
    }
