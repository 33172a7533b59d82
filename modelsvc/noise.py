"""Label noise: rank given labels by how likely they are wrong, from out-of-fold predicted probabilities.

Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels", JAIR 2021) through ``cleanlab``: a label is suspect when a model that never trained on the item
gives it a low probability. ``probs`` must be out-of-fold (``TrainResult.oof_probs``): in-sample
probabilities have memorised the very labels under suspicion.

- ``scores``    cleanlab's self-confidence label quality, p(given label | item), in [0, 1]: lower is worse.
- ``order``     every item, most suspect first (ascending score, ties by index: deterministic).
- ``is_issue``  cleanlab's own verdict (``find_label_issues``, prune by noise rate): the items whose
  count-based confident joint says the label is off. Not needed for a top-share review budget, but a
  useful "how many look wrong" figure.

A review budget takes the top share of ``order`` (``flag_top``); the replay measures how many of the
wrong labels a share catches (docs/REPLAY.md, "Label noise").
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores


@dataclass(frozen=True)
class LabelIssueRanking:
    """Label quality of N given labels: ``scores`` (N,), ``order`` (N,) item indices, ``is_issue`` (N,) bool."""

    scores: np.ndarray
    order: np.ndarray
    is_issue: np.ndarray
    verdict: bool = True  # False: too few labels per class for cleanlab's verdict (is_issue is all False)

    def top(self, share: float) -> np.ndarray:
        """Indices of the ``share`` most suspect labels (at least 1 when share > 0 and N > 0)."""
        return flag_top(self.order, share)


def _check(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or y.shape != (p.shape[0],):
        raise ValueError(f"need labels (N,) and probs (N, C), got {y.shape} and {p.shape}")
    if len(y) and (y.min() < 0 or y.max() >= p.shape[1] or not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"labels must be integer indices in [0, {p.shape[1]})")
    if len(y) and not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("probs rows must sum to 1")
    return y.astype(np.int64), p


def rank_label_issues(labels: np.ndarray, probs: np.ndarray) -> LabelIssueRanking:
    """Rank N given labels (N,) by their out-of-fold probabilities (N, C), most suspect first."""
    y, p = _check(labels, probs)
    if len(y) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return LabelIssueRanking(np.zeros(0), empty, np.zeros(0, dtype=bool), verdict=False)
    scores = np.asarray(get_label_quality_scores(y, p, method="self_confidence"), dtype=np.float64)
    order = np.argsort(scores, kind="stable")
    is_issue = np.zeros(len(y), dtype=bool)
    # cleanlab's confident joint needs a few labels of each given class; with fewer it warns or raises,
    # and its verdict means little, so a tiny label set reports no verdict (the ranking still stands).
    verdict = bool(np.bincount(y, minlength=p.shape[1]).min() >= 2)
    if verdict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # n_jobs=1: by default cleanlab forks a multiprocessing.Pool (one process per core) for this
            # per-class loop. Forked from a Celery worker, the pool's processes inherit the worker's
            # SIGTERM handler (warm shutdown, which does not exit), so the Pool.terminate() on leaving
            # the pool cannot stop one that has not yet read its stop message: it waits forever on the
            # queue lock terminate holds, the join never returns and the training run hangs with its
            # lock held (seen under load in tests/workers/test_pipeline.py). The loop is over classes
            # and takes milliseconds; cleanlab documents that n_jobs changes runtime, never results.
            is_issue[find_label_issues(y, p, filter_by="prune_by_noise_rate", n_jobs=1)] = True
    return LabelIssueRanking(scores, order, is_issue, verdict)


def flag_top(order: np.ndarray, share: float) -> np.ndarray:
    """The first ``ceil(share * N)`` indices of a most-suspect-first ``order`` (N,)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], got {share}")
    return np.asarray(order[: math.ceil(share * len(order))], dtype=np.int64)


def flag_precision_recall(flagged: np.ndarray, wrong: np.ndarray) -> tuple[float, float]:
    """Share of flagged indices that are wrong, and share of wrong labels flagged. wrong: (N,) bool.

    With no flags precision is 0; with no wrong labels recall is 1 (nothing was missed).
    """
    w = np.asarray(wrong, dtype=bool)
    hits = int(w[np.asarray(flagged, dtype=np.int64)].sum())
    precision = hits / len(flagged) if len(flagged) else 0.0
    recall = hits / int(w.sum()) if w.any() else 1.0
    return precision, recall
