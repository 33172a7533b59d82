"""Multi-label math: C independent sigmoid outputs, their uncertainty, calibration, thresholds, metrics.

Pure numpy over sample logits ``(N, K, C)`` (N documents, K stochastic samples of the head, C labels)
and 0/1 targets ``Y (N, C)``. With ``p_k = sigmoid(z_k / T_c)`` per label c and ``p̄ = mean_k p_k``:

- predictive entropy (total)      h(p̄)                 per label, h = Bernoulli entropy in nats
- expected entropy (aleatoric)    mean_k h(p_k)
- mutual information (epistemic)  h(p̄) - mean_k h(p_k) (>= 0), the BALD of one label
- item score (the queue's)        sum over labels of the mutual information: the expected information
  about the weights from labeling the whole set, the labels taken as independent given the weights.
  A sum, not a mean or max, so an item uncertain on several labels outranks one uncertain on one.

Calibration is per label: label c gets its own temperature, fitted on cross-fitted out-of-fold
logits and applied only where it lowers the cross-fitted NLL (the single-label rule,
``calibration.temperature_choose``, run on the label's two-class form [0, z]). Thresholds are per
label too, chosen on the calibrated out-of-fold probabilities to maximize that label's F1; a label
with fewer than ``MIN_POSITIVES_FOR_THRESHOLD`` positive items keeps 0.5 (a threshold fitted on a
handful of positives is noise), and every threshold lies in ``THRESHOLD_RANGE``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import bootstrap

from modelsvc.calibration import INTERVAL_LEVEL, MIN_N_TO_JUDGE, accuracy_interval, ece_mce, temperature_choose

_EPS = 1e-12
#: Fewer positive out-of-fold items than this and a label's threshold stays at DEFAULT_THRESHOLD.
MIN_POSITIVES_FOR_THRESHOLD = 5
DEFAULT_THRESHOLD = 0.5
#: Thresholds are searched (and clipped) within this range: a threshold of 0.01 predicts a label on
#: almost every item, which one lucky fold can make look best.
THRESHOLD_RANGE = (0.05, 0.95)
#: Bootstrap resamples behind the F1 intervals.
F1_INTERVAL_RESAMPLES = 200


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def tempered_probs(sample_logits: np.ndarray, temperatures: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """(N, K, C) logits -> (N, K, C) sample probabilities, label c divided by its temperature T_c."""
    z = np.asarray(sample_logits, dtype=np.float64)
    if temperatures is None:
        return sigmoid(z)
    t = np.asarray(temperatures, dtype=np.float64)
    if t.shape != (z.shape[-1],):
        raise ValueError(f"{t.shape[0] if t.ndim else 1} temperatures for {z.shape[-1]} labels")
    return sigmoid(z / t)


def bernoulli_entropy(p: np.ndarray) -> np.ndarray:
    """Elementwise entropy (nats) of a Bernoulli(p); 0 at p in {0, 1}."""
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1.0 - _EPS)
    return -(p * np.log(p) + (1.0 - p) * np.log1p(-p))


def label_uncertainty(samples: np.ndarray) -> dict[str, np.ndarray]:
    """Per-label uncertainty from sample probabilities (N, K, C): {name: (N, C)}.

    ``entropy`` h(p̄), ``expected_entropy`` mean_k h(p_k), ``mutual_info`` their difference (>= 0).
    """
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"samples must have shape (N, K, C), got {s.shape}")
    total = bernoulli_entropy(s.mean(1))
    expected = bernoulli_entropy(s).mean(1)
    return {"entropy": total, "expected_entropy": expected, "mutual_info": np.maximum(total - expected, 0.0)}


def item_score(mutual_info: np.ndarray) -> np.ndarray:
    """The queue's score of each item (N,) from per-label mutual information (N, C): the sum over labels."""
    return np.asarray(mutual_info, dtype=np.float64).sum(axis=1)


def set_confidence(probs: np.ndarray, thresholds: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """P(the predicted set is exactly right) (N,) with labels independent: prod_c max(p, 1-p) at 0.5 thresholds.

    With other thresholds a label predicted in (p >= t) contributes p, one left out 1 - p.
    """
    p = np.asarray(probs, dtype=np.float64)
    t = np.full(p.shape[1], DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    chosen = p >= t[None, :]
    return np.prod(np.where(chosen, p, 1.0 - p), axis=1)


@dataclass
class MultiLabelScore:
    """Per-document outputs of a multi-label classifier; N documents, K samples, C labels."""

    probs: np.ndarray  # (N, C) calibrated mean probabilities
    probs_uncalibrated: np.ndarray  # (N, C) at T = 1
    predicted: np.ndarray  # (N, C) bool: p >= the label's threshold
    confidence: np.ndarray  # (N,) probability that the predicted set is exactly right
    entropy: np.ndarray  # (N, C) per-label predictive entropy
    expected_entropy: np.ndarray  # (N, C)
    mutual_info: np.ndarray  # (N, C)
    score: np.ndarray  # (N,) item score for the queue: sum of per-label mutual information
    embeddings: np.ndarray  # (N, H)
    thresholds_used: np.ndarray  # (C,)
    samples: np.ndarray | None = None  # (N, K, C) calibrated sample probabilities, if requested

    def uncertainty(self) -> dict[str, np.ndarray]:
        """Item-level (N,) summaries, higher = more uncertain (sums over labels)."""
        return {
            "mutual_info": self.score,
            "entropy": self.entropy.sum(1),
            "expected_entropy": self.expected_entropy.sum(1),
            "least_confidence": 1.0 - self.confidence,
        }

    def margin(self) -> np.ndarray:
        """(N,) distance of the closest label to its threshold: small = the set is nearly different."""
        return np.abs(self.probs - self.thresholds_used).min(axis=1)

    def records(self, label_names: Sequence[str]) -> list[dict[str, Any]]:
        """One JSON-ready dict per document (the CLI's ``score`` output)."""
        names = list(label_names)
        return [
            {
                "probabilities": {n: float(p) for n, p in zip(names, self.probs[i], strict=True)},
                "labels": [names[j] for j in np.flatnonzero(self.predicted[i])],
                "confidence": float(self.confidence[i]),
                "mutual_info": {n: float(m) for n, m in zip(names, self.mutual_info[i], strict=True)},
                "score": float(self.score[i]),
            }
            for i in range(len(self.probs))
        ]


def summarize_multilabel(
    sample_logits: np.ndarray,
    *,
    temperatures: Sequence[float] | np.ndarray | None,
    thresholds: Sequence[float] | np.ndarray | None,
    embeddings: np.ndarray,
    return_samples: bool = False,
) -> MultiLabelScore:
    """Sample logits (N, K, C) -> calibrated MultiLabelScore (also used on out-of-fold logits)."""
    samples = tempered_probs(sample_logits, temperatures)
    probs = samples.mean(1)
    unc = label_uncertainty(samples)
    t = np.full(probs.shape[1], DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    return MultiLabelScore(
        probs=probs,
        probs_uncalibrated=tempered_probs(sample_logits).mean(1),
        predicted=probs >= t[None, :],
        confidence=set_confidence(probs, t),
        entropy=unc["entropy"],
        expected_entropy=unc["expected_entropy"],
        mutual_info=unc["mutual_info"],
        score=item_score(unc["mutual_info"]),
        embeddings=np.asarray(embeddings, dtype=np.float32),
        thresholds_used=t,
        samples=samples if return_samples else None,
    )


def multilabel_acquisition(strategy: str, score: MultiLabelScore, *, seed: int = 0) -> np.ndarray:
    """The queue's score (N,) of a multi-label batch under a project's strategy; higher = ask first.

    ``random`` stays random; every uncertainty strategy ranks by the item score (summed per-label
    mutual information): least-confidence, margin and entropy are softmax notions with no single
    multi-label reading, while the summed BALD is the expected information of labeling the whole set.
    A batch-aware strategy (``diverse``) keeps its batch rule at lease time, on this score.
    """
    if strategy == "random":
        return np.random.default_rng(seed).random(len(score.score))
    return np.asarray(score.score, dtype=np.float64)


def label_temperatures_choose(
    sample_logits: np.ndarray, targets: np.ndarray, groups: np.ndarray
) -> tuple[list[float], list[dict[str, Any]]]:
    """Per-label temperatures (C,) and each label's choice record, by the single-label rule.

    sample_logits (N, K, C) out-of-fold, targets (N, C) 0/1, groups (N,) the folds. Label c's logit z is
    the two-class logit pair [0, z] (softmax([0, z])[1] = sigmoid(z)), so ``temperature_choose`` fits and
    cross-checks it exactly as it does a single-label head: applied only where the cross-fitted NLL drops.
    """
    z = np.asarray(sample_logits, dtype=np.float64)
    y = np.asarray(targets)
    temps: list[float] = []
    records: list[dict[str, Any]] = []
    for c in range(z.shape[2]):
        pair = np.stack([np.zeros_like(z[:, :, c]), z[:, :, c]], axis=2)  # (N, K, 2)
        yc = y[:, c].astype(np.int64)
        if len(np.unique(yc)) < 2:  # one outcome only: a temperature would just push p to 0 or 1
            temps.append(1.0)
            records.append({"chosen": "baseline", "temperature": 1.0, "reason": "one outcome only"})
            continue
        choice = temperature_choose(pair, yc, groups)
        temps.append(float(choice.temperature))
        records.append(choice.as_record())
    return temps, records


def choose_thresholds(probs: np.ndarray, targets: np.ndarray) -> tuple[list[float], list[dict[str, Any]]]:
    """Per-label thresholds (C,) maximizing each label's F1 on out-of-fold probabilities (N, C).

    A label with fewer than ``MIN_POSITIVES_FOR_THRESHOLD`` positives keeps ``DEFAULT_THRESHOLD``.
    Candidates are the midpoints between sorted distinct probabilities within ``THRESHOLD_RANGE``;
    ties go to the threshold closest to 0.5.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets).astype(bool)
    lo, hi = THRESHOLD_RANGE
    out: list[float] = []
    records: list[dict[str, Any]] = []
    for c in range(p.shape[1]):
        positives = int(y[:, c].sum())
        if positives < MIN_POSITIVES_FOR_THRESHOLD:
            out.append(DEFAULT_THRESHOLD)
            records.append({"threshold": DEFAULT_THRESHOLD, "positives": positives, "chosen": "default"})
            continue
        values = np.unique(p[:, c])
        mids = (values[1:] + values[:-1]) / 2 if len(values) > 1 else values
        cand = np.unique(np.clip(np.concatenate([mids, [DEFAULT_THRESHOLD]]), lo, hi))
        pred = p[:, c][None, :] >= cand[:, None]  # (T, N)
        tp = (pred & y[:, c][None, :]).sum(1)
        f1 = 2 * tp / np.maximum(pred.sum(1) + positives, 1)
        best = np.flatnonzero(f1 >= f1.max() - 1e-12)
        t = float(cand[best[np.argmin(np.abs(cand[best] - DEFAULT_THRESHOLD))]])
        out.append(t)
        records.append({"threshold": t, "positives": positives, "chosen": "max_f1", "f1": float(f1.max())})
    return out, records


def _f1s(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(micro F1, macro F1 over labels with a positive or a prediction) of bool (N, C) sets."""
    tp = (pred & y).sum(0).astype(np.float64)
    fp = (pred & ~y).sum(0).astype(np.float64)
    fn = (~pred & y).sum(0).astype(np.float64)
    micro = float(2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1.0))
    seen = (tp + fp + fn) > 0
    per = 2 * tp / np.maximum(2 * tp + fp + fn, 1.0)
    macro = float(per[seen].mean()) if seen.any() else 1.0
    return micro, macro


def example_f1(pred: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-item F1 (N,) of predicted sets vs true sets, both (N, C) bool; 1 when both sets are empty."""
    p = np.asarray(pred, dtype=bool)
    y = np.asarray(targets).astype(bool)
    tp = (p & y).sum(1)
    denom = p.sum(1) + y.sum(1)
    return np.where(denom == 0, 1.0, 2 * tp / np.maximum(denom, 1))


def f1_intervals(pred: np.ndarray, y: np.ndarray, *, seed: int = 0) -> dict[str, list[float]]:
    """Percentile bootstrap intervals (items resampled) of micro and macro F1."""
    if len(y) < 2:
        micro, macro = _f1s(pred, y)
        return {"micro_f1": [micro, micro], "macro_f1": [macro, macro]}
    out = {}
    for i, name in enumerate(("micro_f1", "macro_f1")):
        res = bootstrap(
            (np.arange(len(y)),),
            lambda idx, i=i: _f1s(pred[idx], y[idx])[i],
            n_resamples=F1_INTERVAL_RESAMPLES,
            confidence_level=INTERVAL_LEVEL,
            method="percentile",
            vectorized=False,
            random_state=np.random.default_rng(seed),
        )
        out[name] = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    return out


def label_ece(probs: np.ndarray, targets: np.ndarray) -> list[float]:
    """ECE (15 bins) of each label's probability (N, C) against its 0/1 outcome: (C,)."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(targets).astype(np.int64)
    return [ece_mce(np.stack([1.0 - p[:, c], p[:, c]], axis=1), y[:, c])[0] for c in range(p.shape[1])]


def binary_nll(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean over items of the summed per-label Bernoulli NLL."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0 - _EPS)
    y = np.asarray(targets, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log1p(-p)).sum(1).mean())


def evaluate_multilabel(
    probs_uncal: np.ndarray,
    probs_cal: np.ndarray,
    targets: np.ndarray,
    thresholds: Sequence[float] | np.ndarray | None,
    label_names: Sequence[str],
) -> dict[str, Any]:
    """Metrics of a labeled multi-label set: probs (N, C) before / after calibration, targets (N, C) 0/1.

    ``micro_f1`` / ``macro_f1`` (macro over labels that occur or are predicted) with bootstrap
    intervals, ``subset_accuracy`` (the whole set right) with its Wilson interval, ``hamming_loss``,
    ``example_f1`` (mean per-item F1, what the promotion gate compares), per-label ECE and its mean,
    summed-per-label NLL, and per-label support / F1.
    """
    y = np.asarray(targets).astype(bool)
    n = int(len(y))
    if n == 0:
        raise ValueError("cannot evaluate an empty set")
    t = np.full(y.shape[1], DEFAULT_THRESHOLD) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    pred = np.asarray(probs_cal) >= t[None, :]
    micro, macro = _f1s(pred, y)
    exact = int((pred == y).all(1).sum())
    ece = label_ece(probs_cal, y)
    ece_u = label_ece(probs_uncal, y)
    tp = (pred & y).sum(0)
    per_f1 = 2 * tp / np.maximum(pred.sum(0) + y.sum(0), 1)
    return {
        "n": n,
        "micro_f1": micro,
        "macro_f1": macro,
        "subset_accuracy": exact / n,
        "hamming_loss": float((pred != y).mean()),
        "example_f1": float(example_f1(pred, y).mean()),
        "ece_mean": float(np.mean(ece)),
        "ece_mean_uncalibrated": float(np.mean(ece_u)),
        "nll": binary_nll(probs_cal, y),
        "nll_uncalibrated": binary_nll(probs_uncal, y),
        "per_label": {
            name: {"support": int(y[:, c].sum()), "f1": float(per_f1[c]), "ece": float(ece[c])}
            for c, name in enumerate(label_names)
        },
        "intervals": {
            "n": n,
            "level": INTERVAL_LEVEL,
            "min_n": MIN_N_TO_JUDGE,
            "too_small": n < MIN_N_TO_JUDGE,
            "subset_accuracy": list(accuracy_interval(exact, n)),
            **f1_intervals(pred, y),
        },
    }
