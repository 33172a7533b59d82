"""Label-noise ranking from out-of-fold probabilities (confident learning via cleanlab)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from modelsvc.fitting import train_embeddings
from modelsvc.noise import flag_precision_recall, flag_top, rank_label_issues


def noisy_probs(n: int, c: int, flip: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities of a decent model of the truth, and given labels with ``flip`` of them wrong."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, c, n)
    logits = rng.normal(size=(n, c))
    logits[np.arange(n), truth] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    wrong = rng.random(n) < flip
    given = np.where(wrong, (truth + rng.integers(1, c, n)) % c, truth)
    return given, probs, wrong


def test_the_most_suspect_labels_are_the_wrong_ones() -> None:
    given, probs, wrong = noisy_probs(1000, 3, 0.15, seed=0)
    ranking = rank_label_issues(given, probs)
    precision, recall = flag_precision_recall(ranking.top(0.10), wrong)
    assert len(ranking.top(0.10)) == 100
    assert precision >= 0.9 and recall >= 0.5
    assert ranking.is_issue.sum() > 0 and wrong[ranking.is_issue].mean() >= 0.7
    # self-confidence: the score is the probability given to the label
    np.testing.assert_allclose(ranking.scores, probs[np.arange(1000), given])
    assert np.all(np.diff(ranking.scores[ranking.order]) >= 0)


#: Forks seen while ``_counting_forks`` is on (``os.register_at_fork`` cannot be undone, so it is registered once).
_forks: list[int] = []
_counting_forks = [False]
os.register_at_fork(before=lambda: _forks.append(1) if _counting_forks[0] else None)


def test_ranking_runs_in_the_calling_process_and_forks_nothing() -> None:
    """cleanlab's verdict forks a process pool by default; forked from a Celery worker, that pool could
    hang the training run for good (its processes keep the worker's SIGTERM handler, so the pool's
    terminate cannot end them). The ranking must stay in the calling process, with the same verdict."""
    given, probs, wrong = noisy_probs(300, 2, 0.15, seed=3)
    _counting_forks[0] = True
    try:
        ranking = rank_label_issues(given, probs)
    finally:
        _counting_forks[0] = False
    assert _forks == []
    assert ranking.is_issue.sum() > 0 and wrong[ranking.is_issue].mean() >= 0.7  # the verdict still ran


def test_ranking_is_deterministic_and_breaks_ties_by_index() -> None:
    probs = np.full((4, 2), 0.5)
    ranking = rank_label_issues(np.array([1, 0, 1, 0]), probs)
    assert ranking.order.tolist() == [0, 1, 2, 3]
    assert flag_top(ranking.order, 0.3).tolist() == [0, 1]  # ceil(0.3 * 4)


def test_small_and_empty_inputs() -> None:
    ranking = rank_label_issues(np.array([0, 1]), np.array([[0.9, 0.1], [0.9, 0.1]]))
    assert ranking.order.tolist() == [1, 0] and not ranking.is_issue.any()
    empty = rank_label_issues(np.zeros(0, dtype=int), np.zeros((0, 3)))
    assert len(empty.order) == 0 and len(empty.top(0.1)) == 0
    assert flag_precision_recall(np.zeros(0, dtype=int), np.array([True])) == (0.0, 0.0)
    assert flag_precision_recall(np.array([0]), np.array([False])) == (0.0, 1.0)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        rank_label_issues(np.array([0, 2]), np.array([[0.5, 0.5], [0.5, 0.5]]))
    with pytest.raises(ValueError):
        rank_label_issues(np.array([0, 1]), np.array([[0.5, 0.6], [0.5, 0.5]]))
    with pytest.raises(ValueError):
        flag_top(np.arange(3), 1.5)


def test_train_result_carries_out_of_fold_probabilities_that_find_flipped_labels() -> None:
    rng = np.random.default_rng(0)
    n = 120
    truth = np.arange(n) % 2
    emb = (np.eye(8)[truth] * 3.0 + rng.normal(size=(n, 8))).astype(np.float32)
    given = truth.copy()
    flipped = np.arange(0, n, 10)  # 12 labels flipped
    given[flipped] = 1 - given[flipped]
    result = train_embeddings(emb, [f"c{g}" for g in given], label_names=["c0", "c1"], encoder_id="x")
    assert result.oof_probs is not None and result.oof_probs.shape == (n, 2)
    np.testing.assert_allclose(result.oof_probs.sum(axis=1), 1.0, rtol=1e-5)
    ranking = rank_label_issues(given, result.oof_probs)
    wrong = np.zeros(n, dtype=bool)
    wrong[flipped] = True
    _, recall = flag_precision_recall(ranking.top(0.10), wrong)
    assert recall >= 0.75


def test_single_split_training_has_no_out_of_fold_probabilities() -> None:
    from modelsvc.config import TrainConfig

    emb = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    result = train_embeddings(
        emb, ["a", "b"] * 6, label_names=["a", "b"], encoder_id="x", train_config=TrainConfig(folds=0)
    )
    assert result.oof_probs is None
