"""Acquisition strategies: one registry of pure scorers over sample probabilities (N, K, C).

A strategy is declared once in ``REGISTRY``: its name (the value stored on a project), a human
label, a scorer (N, K, C) -> (N,) (higher = more informative) and whether it is batch-aware. The
service's choices (``labeling.models.AcquisitionStrategy``) are derived from it.

Batch-aware means: concurrent annotators build a batch one lease at a time, and the queue passes
over candidates that duplicate, or sit next to, an item someone else already holds
(``near_copy_order``), so simultaneous annotators do not all get the top of one uncertain cluster.
``diverse`` is BALD with that rule; every other strategy serves its scores in order.
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
    score: (samples (N, K, C), seed) -> (N,) informativeness; only ``random`` uses the seed.
    batch_aware: the live queue pushes near-copies of documents leased to others to the back.
    """

    name: str
    label: str
    score: Scorer
    batch_aware: bool = False


def _random(s: np.ndarray, seed: int) -> np.ndarray:
    return np.asarray(np.random.default_rng(seed).random(s.shape[0]))


REGISTRY: Mapping[str, Strategy] = MappingProxyType({s.name: s for s in (
    Strategy("random", "Random", _random),
    Strategy("least_confidence", "Least confidence", lambda s, seed: U.least_confidence(s)),
    Strategy("margin", "Smallest margin", lambda s, seed: 1.0 - U.margin(s)),
    Strategy("entropy", "Predictive entropy", lambda s, seed: U.predictive_entropy(s)),
    Strategy("bald", "BALD (mutual information)", lambda s, seed: U.mutual_information(s)),
    Strategy("diverse", "BALD, diversified across the batch", lambda s, seed: U.mutual_information(s),
             batch_aware=True),
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
