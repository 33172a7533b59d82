"""Acquisition strategies: pure functions over sample probabilities (N, K, C) and embeddings (N, H).

``acquisition_scores`` ranks single documents (higher = more informative). ``select_batch`` picks
a batch of n indices; for ``diverse`` it avoids near-copies: among the top ``pool_factor * n``
candidates by predictive entropy it runs score-weighted k-means++ seeding on cosine distances of
the embeddings (each next item drawn with probability proportional to score * distance^2 to the
items already chosen). Without embeddings, ``diverse`` falls back to stochastic power sampling
(Gumbel top-n over score^beta, Kirsch et al. 2023).

``near_copy_order`` is the same rule for a live queue, where a batch is built one lease at a time by
concurrent annotators: candidates that duplicate, or sit next to, an item someone else already holds
go to the back, so simultaneous annotators do not all get the top of one uncertain cluster.
"""

from __future__ import annotations

import numpy as np

from modelsvc import uncertainty as U

STRATEGIES: tuple[str, ...] = ("random", "least_confidence", "margin", "entropy", "bald", "diverse")


def acquisition_scores(strategy: str, samples: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """(N, K, C) -> (N,) informativeness, higher = ask first."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"samples must have shape (N, K, C), got {s.shape}")
    if strategy == "random":
        return np.asarray(np.random.default_rng(seed).random(s.shape[0]))
    if strategy == "least_confidence":
        return U.least_confidence(s)
    if strategy == "margin":
        return 1.0 - U.margin(s)
    if strategy == "bald":
        return U.mutual_information(s)
    return U.predictive_entropy(s)  # entropy, and the base score of diverse


def _power_sample(scores: np.ndarray, n: int, rng: np.random.Generator, beta: float = 1.0) -> np.ndarray:
    gumbel = rng.gumbel(size=scores.shape[0])
    keys = beta * np.log(np.maximum(scores, 1e-12)) + gumbel
    return np.argsort(-keys, kind="stable")[:n]


def _kmeanspp(emb: np.ndarray, scores: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    x = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    w = np.maximum(scores, 1e-12)
    chosen = [int(np.argmax(w))]
    dist = np.maximum(1.0 - x @ x[chosen[0]], 0.0)  # cosine distance to nearest chosen, (M,)
    while len(chosen) < n:
        p = w * dist**2
        p[chosen] = 0.0
        if p.sum() <= 0:  # everything left is a duplicate of a chosen item: fall back to score order
            rest = [i for i in np.argsort(-w, kind="stable") if i not in set(chosen)]
            chosen.extend(int(i) for i in rest[: n - len(chosen)])
            break
        nxt = int(rng.choice(len(p), p=p / p.sum()))
        chosen.append(nxt)
        dist = np.minimum(dist, np.maximum(1.0 - x @ x[nxt], 0.0))
    return np.asarray(chosen, dtype=np.int64)


def select_batch(
    strategy: str,
    samples: np.ndarray,
    embeddings: np.ndarray | None,
    n: int,
    *,
    seed: int = 0,
    pool_factor: int = 5,
) -> np.ndarray:
    """Indices (min(n, N),) of the documents to label next, most informative first.

    samples (N, K, C); embeddings (N, H), used by ``diverse`` only.
    """
    scores = acquisition_scores(strategy, samples, seed=seed)
    total = scores.shape[0]
    n = min(max(n, 0), total)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if strategy != "diverse":
        return np.argsort(-scores, kind="stable")[:n].astype(np.int64)
    if embeddings is None:
        return _power_sample(scores, n, rng).astype(np.int64)
    emb = np.asarray(embeddings, dtype=np.float64)
    if emb.shape[0] != total:
        raise ValueError(f"embeddings have {emb.shape[0]} rows, samples {total}")
    pool = np.argsort(-scores, kind="stable")[: min(total, max(n, pool_factor * n))]
    picked = _kmeanspp(emb[pool], scores[pool], n, rng)
    return pool[picked].astype(np.int64)


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
