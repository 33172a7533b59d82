"""Inter-annotator agreement: pure functions over a ratings matrix, each figure with a bootstrap interval.

``ratings`` has shape (N, R): N items, R raters, entry ``ratings[i, r]`` the label index (0 .. C-1) rater
r gave item i, or NaN / -1 where r did not rate i. The point values come from well-kept libraries:

- Krippendorff's alpha (nominal)   ``krippendorff.alpha`` on the per-item label counts; it uses every item
  with at least 2 ratings and any number of raters per item.
- Fleiss' kappa                    ``statsmodels.stats.inter_rater.fleiss_kappa``. Fleiss' formula assumes
  every item has the same number of ratings, so it is computed on the items whose rating count is the most
  common count among items with at least 2 ratings (ties go to the larger count); ``n_items`` says how
  many that was. With a fixed overlap policy that is every overlapped item.
- Cohen's kappa per rater pair     ``sklearn.metrics.cohen_kappa_score`` on the items both raters rated.
- per label                        alpha of the one-vs-rest binary ratings (label c / not c).
- per rater                        the mean of that rater's pairwise Cohen's kappas (over the partners with
  a defined kappa): how well the rater agrees with colleagues, on the items they shared. It needs no
  consensus, so a rater is not judged by a majority they are part of.

Intervals are percentile bootstraps that resample ITEMS (raters stay fixed): one seeded set of
replicates is shared by every figure in a report, and each replicate recomputes the figure with the same
library (``krippendorff`` for alpha, ``statsmodels`` for both kappas, the latter on the replicate's
contingency table). A figure is undefined (``value`` None) with fewer than 2 usable items or when every
usable rating has the same label (expected disagreement 0); replicates that are undefined are dropped.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa

MISSING = -1


@dataclass(frozen=True)
class Estimate:
    """A statistic, its bootstrap interval, and how many items it was computed on.

    ``value`` is None when undefined (fewer than 2 usable items, or a single label among them); ``low`` and
    ``high`` are None when the value is, or when no bootstrap replicate was defined (or ``n_boot`` was 0).
    """

    value: float | None
    low: float | None
    high: float | None
    n_items: int

    def as_dict(self) -> dict[str, float | int | None]:
        return {"value": self.value, "low": self.low, "high": self.high, "n_items": self.n_items}


@dataclass(frozen=True)
class AgreementReport:
    """Agreement among R raters on N items over C labels.

    ``pairwise_kappa`` is keyed by rater column pairs (r1, r2) with r1 < r2, only for pairs that shared at
    least one item; ``per_label`` has C entries; ``per_rater`` has R entries.
    """

    alpha: Estimate
    fleiss_kappa: Estimate
    pairwise_kappa: Mapping[tuple[int, int], Estimate]
    per_label: tuple[Estimate, ...]
    per_rater: tuple[Estimate, ...]
    n_items: int
    n_raters: int
    n_labels: int


class ReferenceAgreement(NamedTuple):
    """One annotator against a reference (consensus, reviewer or gold); unpacks as a 3-tuple.

    ``confusion`` (C, C): rows are the reference label, columns the annotator's label.
    """

    accuracy: Estimate
    kappa: Estimate
    confusion: np.ndarray


def as_ratings(ratings: np.ndarray, n_labels: int) -> np.ndarray:
    """(N, R) label indices with NaN / -1 for "not rated" -> (N, R) int64 with -1 for "not rated"."""
    if n_labels < 1:
        raise ValueError(f"n_labels must be >= 1, got {n_labels}")
    r = np.asarray(ratings, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"ratings must have shape (N, R), got {r.shape}")
    r = np.where(np.isnan(r), MISSING, r)
    if np.any(r != np.round(r)) or np.any((r != MISSING) & ((r < 0) | (r >= n_labels))):
        raise ValueError(f"ratings must be label indices in [0, {n_labels}) or NaN / -1")
    return r.astype(np.int64)


def label_counts(ratings: np.ndarray, n_labels: int) -> np.ndarray:
    """(N, R) ratings -> (N, C) how many raters gave each item each label."""
    r = as_ratings(ratings, n_labels)
    counts = np.zeros((r.shape[0], n_labels), dtype=np.int64)
    rows, cols = np.nonzero(r != MISSING)
    np.add.at(counts, (rows, r[rows, cols]), 1)
    return counts


def _defined(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _alpha(counts: np.ndarray) -> float | None:
    """Nominal Krippendorff's alpha of (N, C) label counts; None if undefined."""
    pairable = counts[counts.sum(axis=1) >= 2]
    if len(pairable) < 2 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return _defined(krippendorff.alpha(value_counts=pairable, level_of_measurement="nominal"))


def _fleiss(counts: np.ndarray) -> float | None:
    """Fleiss' kappa of (N, C) label counts with one rating count per item; None if undefined."""
    if len(counts) < 2 or np.count_nonzero(counts.sum(axis=0)) < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return _defined(fleiss_kappa(counts, method="fleiss"))


def _kappa_from_table(table: np.ndarray) -> float | None:
    """Cohen's kappa of a (C, C) contingency table; None if undefined."""
    if table.sum() < 2:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return _defined(float(cohens_kappa(table, return_results=False)))


def _fleiss_items(counts: np.ndarray) -> np.ndarray:
    """(N,) mask of the items Fleiss' kappa is computed on: the modal rating count among items with >= 2."""
    m = counts.sum(axis=1)
    rated = m[m >= 2]
    if len(rated) == 0:
        return np.zeros(len(m), dtype=bool)
    values, freq = np.unique(rated, return_counts=True)
    modal = values[freq == freq.max()].max()
    return m == modal


def _interval(replicates: list[float | None], level: float) -> tuple[float | None, float | None]:
    vals = np.array([v for v in replicates if v is not None], dtype=np.float64)
    if len(vals) == 0:
        return None, None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(vals, [tail, 100.0 - tail])
    return float(low), float(high)


def _resamples(n_items: int, seed: int, n_boot: int) -> list[np.ndarray]:
    """n_boot item-index draws of size n_items, with replacement, from one seeded generator."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n_items, n_items) for _ in range(n_boot)] if n_items else []


def _estimate(
    stat: Callable[[np.ndarray], float | None], n_items: int, draws: list[np.ndarray], level: float
) -> Estimate:
    """Apply ``stat`` (item indices -> value) to all items and to every bootstrap draw."""
    value = stat(np.arange(n_items))
    if value is None:
        return Estimate(None, None, None, n_items)
    low, high = _interval([stat(idx) for idx in draws], level)
    return Estimate(value, low, high, n_items)


def _binary_alpha(binary: np.ndarray) -> Callable[[np.ndarray], float | None]:
    return lambda idx: _alpha(binary[idx])


def _pair_codes(a: np.ndarray, b: np.ndarray, n_labels: int) -> np.ndarray:
    return a * n_labels + b


def _table(codes: np.ndarray, n_labels: int) -> np.ndarray:
    return np.bincount(codes, minlength=n_labels * n_labels).reshape(n_labels, n_labels).astype(np.float64)


def _check_boot(n_boot: int, level: float) -> None:
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _pairwise(
    r: np.ndarray, n_labels: int, draws: list[np.ndarray], level: float
) -> tuple[dict[tuple[int, int], Estimate], dict[tuple[int, int], list[float | None]]]:
    """Cohen's kappa per rater pair, with the per-draw replicates (for the per-rater means)."""
    n, n_raters = r.shape
    estimates: dict[tuple[int, int], Estimate] = {}
    replicates: dict[tuple[int, int], list[float | None]] = {}
    for i in range(n_raters):
        for j in range(i + 1, n_raters):
            both = (r[:, i] != MISSING) & (r[:, j] != MISSING)
            if not both.any():
                continue
            codes = np.full(n, -1, dtype=np.int64)
            codes[both] = _pair_codes(r[both, i], r[both, j], n_labels)
            value = None
            if both.sum() >= 2:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value = _defined(cohen_kappa_score(r[both, i], r[both, j], labels=list(range(n_labels))))
            reps = [_kappa_from_table(_table(c[c >= 0], n_labels)) for c in (codes[idx] for idx in draws)]
            replicates[(i, j)] = reps
            low, high = _interval(reps, level) if value is not None else (None, None)
            estimates[(i, j)] = Estimate(value, low, high, int(both.sum()))
    return estimates, replicates


def _per_rater(
    r: np.ndarray,
    pairwise: Mapping[tuple[int, int], Estimate],
    replicates: Mapping[tuple[int, int], list[float | None]],
    n_draws: int,
    level: float,
) -> tuple[Estimate, ...]:
    out = []
    rated = r != MISSING
    for k in range(r.shape[1]):
        pairs = [p for p in pairwise if k in p and pairwise[p].value is not None]
        shared = int((rated[:, k] & (rated.sum(axis=1) >= 2)).sum())
        if not pairs:
            out.append(Estimate(None, None, None, shared))
            continue
        value = float(np.mean([pairwise[p].value for p in pairs]))
        reps: list[float | None] = []
        for b in range(n_draws):
            defined = [v for v in (replicates[p][b] for p in pairs) if v is not None]
            reps.append(float(np.mean(defined)) if defined else None)
        low, high = _interval(reps, level)
        out.append(Estimate(value, low, high, shared))
    return tuple(out)


def agreement_report(
    ratings: np.ndarray, n_labels: int, *, seed: int = 0, n_boot: int = 1000, level: float = 0.95
) -> AgreementReport:
    """Krippendorff's alpha, Fleiss' kappa, pairwise Cohen's kappa, per-label and per-rater agreement.

    ratings: (N, R) label indices, NaN or -1 for "not rated". Every interval comes from the same
    ``n_boot`` seeded resamples of the N items, at confidence ``level``.
    """
    _check_boot(n_boot, level)
    r = as_ratings(ratings, n_labels)
    n = r.shape[0]
    counts = label_counts(r, n_labels)
    draws = _resamples(n, seed, n_boot)
    pairable = int((counts.sum(axis=1) >= 2).sum())

    alpha_est = _estimate(lambda idx: _alpha(counts[idx]), n, draws, level)
    alpha_est = Estimate(alpha_est.value, alpha_est.low, alpha_est.high, pairable)

    in_fleiss = _fleiss_items(counts)
    fleiss_est = _estimate(lambda idx: _fleiss(counts[idx][in_fleiss[idx]]), n, draws, level)
    fleiss_est = Estimate(fleiss_est.value, fleiss_est.low, fleiss_est.high, int(in_fleiss.sum()))

    per_label = []
    for c in range(n_labels):
        binary = np.stack([counts.sum(axis=1) - counts[:, c], counts[:, c]], axis=1)
        est = _estimate(_binary_alpha(binary), n, draws, level)
        per_label.append(Estimate(est.value, est.low, est.high, pairable))

    pairwise, replicates = _pairwise(r, n_labels, draws, level)
    per_rater = _per_rater(r, pairwise, replicates, len(draws), level)
    return AgreementReport(
        alpha=alpha_est,
        fleiss_kappa=fleiss_est,
        pairwise_kappa=pairwise,
        per_label=tuple(per_label),
        per_rater=per_rater,
        n_items=n,
        n_raters=r.shape[1],
        n_labels=n_labels,
    )


def agreement_with_reference(
    labels: np.ndarray,
    reference: np.ndarray,
    n_labels: int,
    *,
    seed: int = 0,
    n_boot: int = 1000,
    level: float = 0.95,
) -> ReferenceAgreement:
    """One annotator's labels against a reference: accuracy, Cohen's kappa and the confusion matrix.

    labels, reference: (N,) label indices, NaN or -1 where absent; only items with both count. Returns
    accuracy and kappa with item-bootstrap intervals, and the (C, C) confusion (rows: reference).
    """
    _check_boot(n_boot, level)
    pair = as_ratings(
        np.stack([np.asarray(reference, dtype=np.float64), np.asarray(labels, dtype=np.float64)], 1), n_labels
    )
    pair = pair[(pair != MISSING).all(axis=1)]
    ref, lab = pair[:, 0], pair[:, 1]
    n = len(pair)
    confusion = confusion_matrix(ref, lab, labels=list(range(n_labels))) if n else np.zeros((n_labels, n_labels))
    draws = _resamples(n, seed, n_boot)
    correct = (ref == lab).astype(np.float64)
    accuracy = _estimate(lambda idx: float(correct[idx].mean()) if len(idx) else None, n, draws, level)
    codes = _pair_codes(ref, lab, n_labels)
    value = None
    if n >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = _defined(cohen_kappa_score(ref, lab, labels=list(range(n_labels))))
    if value is None:
        kappa = Estimate(None, None, None, n)
    else:
        low, high = _interval([_kappa_from_table(_table(codes[idx], n_labels)) for idx in draws], level)
        kappa = Estimate(value, low, high, n)
    return ReferenceAgreement(accuracy, kappa, confusion.astype(np.int64))


def flip_noise_truth(flip_rate: float, prior: np.ndarray) -> tuple[float, float]:
    """The population agreement of two independent annotators who each flip a label with ``flip_rate``.

    A flipped label goes uniformly to one of the other C-1 labels. prior: (C,) the true label shares.
    Returns (observed agreement, kappa). With identical rater margins Cohen's kappa, Fleiss' kappa and
    Krippendorff's alpha share this population value (alpha differs only by its small-sample correction).
    """
    p = np.asarray(prior, dtype=np.float64)
    p = p / p.sum()
    c = len(p)
    if c < 2 or not 0.0 <= flip_rate <= 1.0:
        raise ValueError("need at least 2 labels and a flip rate in [0, 1]")
    # confusion[t, l] = P(label l | true t)
    channel = np.full((c, c), flip_rate / (c - 1))
    np.fill_diagonal(channel, 1.0 - flip_rate)
    observed = float(sum(p[t] * (channel[t] ** 2).sum() for t in range(c)))
    margins = p @ channel
    expected = float((margins**2).sum())
    return observed, (observed - expected) / (1.0 - expected)
