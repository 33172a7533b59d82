"""Acquisition strategies: one registry of pure scorers over sample probabilities (N, K, C).

A strategy is declared once in ``REGISTRY``: its name (the value stored on a project), a human
label, a scorer (N, K, C) -> (N,) (higher = more informative) and whether it is batch-aware. The
service's choices (``labeling.models.AcquisitionStrategy``) are derived from it.

Batch-aware means: concurrent annotators build a batch one lease at a time, and the queue passes
over candidates that duplicate, or sit next to, an item someone else already holds
(``near_copy_order``), so simultaneous annotators do not all get the top of one uncertain cluster.
``diverse`` is BALD with that rule; every other strategy serves its scores in order.

Stochastic means: the stored score is a Gumbel-perturbed key, so serving the pool in descending key
order samples it without replacement with probability proportional to ``base ** power`` (Gumbel-top-k;
Kirsch et al. 2023, "Stochastic Batch Acquisition"). Each lease's selection probability is then known
(``selection_probability``), which lets the temperature fit weight labels back to the pool.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from modelsvc import uncertainty as U

#: (samples (N, K, C), seed) -> scores (N,), higher = ask first.
Scorer = Callable[[np.ndarray, int], np.ndarray]


@dataclass(frozen=True)
class Strategy:
    """One acquisition strategy.

    name: the stored value (a project's ``acquisition_strategy``); never rename one.
    label: what a person reads in forms and the admin.
    score: (samples (N, K, C), seed) -> (N,) informativeness; only ``random`` and stochastic ones use the seed.
    batch_aware: the live queue pushes near-copies of documents leased to others to the back.
    power: set for a stochastic strategy: ``score`` is ``power * log(base + floor) + Gumbel`` where
        ``base`` is the per-document BALD (``Prediction.mutual_info``), so the queue's order is a draw
        proportional to ``(base + floor) ** power`` and each lease records its probability.
    """

    name: str
    label: str
    score: Scorer
    batch_aware: bool = False
    power: float | None = None


#: Added to the base score before the power, so a document whose BALD is 0 keeps a (small) chance of
#: being drawn and a finite importance weight.
POWER_FLOOR = 1e-6
#: beta of power-BALD: 1 is the paper's default (beta = 0 would be random, beta -> inf top-k BALD).
POWER_BETA = 1.0


def _random(s: np.ndarray, seed: int) -> np.ndarray:
    return np.asarray(np.random.default_rng(seed).random(s.shape[0]))


def power_weights(base: np.ndarray, power: float) -> np.ndarray:
    """(N,) unnormalised sampling weights ``(base + POWER_FLOOR) ** power`` of base scores (N,) >= 0."""
    return (np.maximum(np.asarray(base, dtype=np.float64), 0.0) + POWER_FLOOR) ** power


def gumbel_keys(base: np.ndarray, power: float, seed: int) -> np.ndarray:
    """(N,) keys whose descending order is a draw without replacement proportional to ``power_weights``.

    Gumbel-top-k: ``log w_i + G_i`` with G_i ~ Gumbel(0, 1) i.i.d. (seeded); the top item is item i with
    probability w_i / sum(w), and conditionally on it the next one likewise among the rest, and so on.
    """
    g = np.random.default_rng(seed).gumbel(size=np.shape(base))
    return np.log(power_weights(base, power)) + g


def selection_probability(base: float, power: float, normaliser: float) -> float:
    """The probability that a draw proportional to ``power_weights`` picks this item among a pool whose
    weights sum to ``normaliser`` (the item included)."""
    w = float(power_weights(np.array([base]), power)[0])
    return w / normaliser if normaliser > 0 else 0.0


def _power_bald(s: np.ndarray, seed: int) -> np.ndarray:
    return gumbel_keys(U.mutual_information(s), POWER_BETA, seed)


REGISTRY: Mapping[str, Strategy] = MappingProxyType({s.name: s for s in (
    Strategy("random", "Random", _random),
    Strategy("least_confidence", "Least confidence", lambda s, seed: U.least_confidence(s)),
    Strategy("margin", "Smallest margin", lambda s, seed: 1.0 - U.margin(s)),
    Strategy("entropy", "Predictive entropy", lambda s, seed: U.predictive_entropy(s)),
    Strategy("bald", "BALD (mutual information)", lambda s, seed: U.mutual_information(s)),
    Strategy("diverse", "BALD, diversified across the batch", lambda s, seed: U.mutual_information(s),
             batch_aware=True),
    Strategy("power_bald", "Stochastic power-BALD (sampled, calibration-weighted)", _power_bald,
             power=POWER_BETA),
)})
STRATEGIES: tuple[str, ...] = tuple(REGISTRY)


def strategy_get(name: str) -> Strategy:
    """The registered strategy called ``name``; ValueError for an unknown one."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}") from None


def acquisition_scores(strategy: str, samples: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """(N, K, C) -> (N,) informativeness under ``strategy``, higher = ask first."""
    scorer = strategy_get(strategy).score
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"samples must have shape (N, K, C), got {s.shape}")
    return scorer(s, seed)


def near_copy_order(
    points: np.ndarray, held: np.ndarray, *, duplicate: np.ndarray | None = None, share: float = 0.02
) -> np.ndarray:
    """Candidate order (N,) with near-copies of held items last; each group keeps its given order.

    points (N, 2): the candidates' positions on the embedding map (NaN where unknown); held (L, 2):
    the positions of items already leased to others. A candidate is a near-copy when ``duplicate``
    (N,) marks it (e.g. the same text) or when it lies closer to a held item than ``share`` of the
    larger side of the box around all points.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    hld = np.asarray(held, dtype=np.float64).reshape(-1, 2)
    near = np.zeros(pts.shape[0], dtype=bool) if duplicate is None else np.asarray(duplicate, dtype=bool).copy()
    known = ~np.isnan(pts).any(axis=1)
    every = np.concatenate([pts[known], hld])
    if every.shape[0] and hld.shape[0]:
        radius = share * float(np.max(every.max(axis=0) - every.min(axis=0)))
        if radius > 0:
            dist = np.linalg.norm(pts[:, None, :] - hld[None, :, :], axis=2).min(axis=1)  # (N,)
            near |= known & (dist < radius)
    return np.concatenate([np.flatnonzero(~near), np.flatnonzero(near)]).astype(np.int64)
