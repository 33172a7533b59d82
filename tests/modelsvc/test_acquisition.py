import numpy as np
import pytest

from modelsvc.acquisition import STRATEGIES, acquisition_scores, select_batch


def _samples() -> np.ndarray:
    # doc 0: confident; doc 1: aleatoric (agreeing 50/50); doc 2: epistemic (disagreeing)
    return np.array(
        [
            [[0.99, 0.01], [0.98, 0.02]],
            [[0.5, 0.5], [0.5, 0.5]],
            [[0.95, 0.05], [0.05, 0.95]],
        ]
    )


def test_uncertainty_strategies_rank_confident_last() -> None:
    for name in ("least_confidence", "margin", "entropy"):
        scores = acquisition_scores(name, _samples())
        assert scores.argmin() == 0, name


def test_bald_prefers_disagreement_over_noise() -> None:
    scores = acquisition_scores("bald", _samples())
    assert scores.argmax() == 2
    assert scores[1] == pytest.approx(0.0, abs=1e-12)


def test_unknown_strategy_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown strategy"):
        acquisition_scores("nope", _samples())


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_select_batch_returns_distinct_indices(strategy: str) -> None:
    rng = np.random.default_rng(0)
    samples = rng.dirichlet(np.ones(3), size=(40, 4))
    emb = rng.normal(size=(40, 8))
    idx = select_batch(strategy, samples, emb, 10, seed=1)
    assert len(idx) == 10 and len(set(idx.tolist())) == 10
    assert ((idx >= 0) & (idx < 40)).all()


def test_diverse_avoids_near_copies() -> None:
    # 30 near-identical, highly uncertain documents and 10 spread, slightly less uncertain ones.
    rng = np.random.default_rng(0)
    base = rng.normal(size=8)
    dup_emb = base + 1e-4 * rng.normal(size=(30, 8))
    spread_emb = rng.normal(size=(10, 8)) * 3
    emb = np.vstack([dup_emb, spread_emb])
    samples = np.vstack([np.tile([[[0.5, 0.5]] * 4], (30, 1, 1)), np.tile([[[0.6, 0.4]] * 4], (10, 1, 1))])
    greedy = select_batch("entropy", samples, emb, 6)
    diverse = select_batch("diverse", samples, emb, 6, seed=0, pool_factor=10)
    assert (greedy < 30).all()  # greedy takes only the copies
    assert (diverse < 30).sum() <= 1  # diverse takes one copy at most, then spreads out
    picked = emb[diverse] / np.linalg.norm(emb[diverse], axis=1, keepdims=True)
    cos = picked @ picked.T
    assert (cos[~np.eye(6, dtype=bool)] < 0.999).all()


def test_diverse_without_embeddings_and_small_pools() -> None:
    rng = np.random.default_rng(0)
    samples = rng.dirichlet(np.ones(2), size=(5, 3))
    idx = select_batch("diverse", samples, None, 3, seed=0)
    assert len(set(idx.tolist())) == 3
    assert len(select_batch("bald", samples, None, 50)) == 5
    assert len(select_batch("diverse", samples, rng.normal(size=(5, 4)), 0)) == 0


def test_near_copies_of_held_items_go_last_in_their_order() -> None:
    from modelsvc.acquisition import near_copy_order

    points = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [np.nan, np.nan], [9.99, 10.0], [3.0, 3.0]])
    held = np.array([[10.0, 10.0], [5.0, 5.05]])
    duplicate = np.array([False, True, False, False, False, False])
    # extent 10 -> radius 0.2: candidates 2 and 4 sit on held items, 1 is the same text, 3 has no point
    assert near_copy_order(points, held, duplicate=duplicate).tolist() == [0, 3, 5, 1, 2, 4]
    assert near_copy_order(points, np.zeros((0, 2))).tolist() == [0, 1, 2, 3, 4, 5]  # nobody holds anything
