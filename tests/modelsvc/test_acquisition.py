import numpy as np
import pytest

from modelsvc.acquisition import REGISTRY, STRATEGIES, acquisition_scores, strategy_get


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


def test_every_strategy_scores_each_document_and_only_diverse_is_batch_aware() -> None:
    rng = np.random.default_rng(0)
    samples = rng.dirichlet(np.ones(3), size=(40, 4))
    for name in STRATEGIES:
        scores = acquisition_scores(name, samples, seed=1)
        assert scores.shape == (40,) and np.isfinite(scores).all(), name
    assert [s.name for s in REGISTRY.values() if s.batch_aware] == ["diverse"]
    # diverse ranks by BALD; its batch rule is applied at lease time (near_copy_order).
    np.testing.assert_array_equal(acquisition_scores("diverse", samples), acquisition_scores("bald", samples))
    with pytest.raises(ValueError, match="unknown strategy"):
        strategy_get("nope")


def test_near_copies_of_held_items_go_last_in_their_order() -> None:
    from modelsvc.acquisition import near_copy_order

    points = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [np.nan, np.nan], [9.99, 10.0], [3.0, 3.0]])
    held = np.array([[10.0, 10.0], [5.0, 5.05]])
    duplicate = np.array([False, True, False, False, False, False])
    # extent 10 -> radius 0.2: candidates 2 and 4 sit on held items, 1 is the same text, 3 has no point
    assert near_copy_order(points, held, duplicate=duplicate).tolist() == [0, 3, 5, 1, 2, 4]
    assert near_copy_order(points, np.zeros((0, 2))).tolist() == [0, 1, 2, 3, 4, 5]  # nobody holds anything


def test_power_bald_is_a_seeded_draw_proportional_to_bald() -> None:
    from modelsvc.acquisition import POWER_BETA, gumbel_keys, power_weights, selection_probability

    base = np.array([0.4, 0.3, 0.2, 0.1, 0.0])
    # The same seed draws the same order; another seed another one.
    np.testing.assert_array_equal(gumbel_keys(base, 1.0, seed=3), gumbel_keys(base, 1.0, seed=3))
    assert not np.array_equal(gumbel_keys(base, 1.0, seed=3), gumbel_keys(base, 1.0, seed=4))
    # The probabilities the queue records sum to 1 over the pool and follow the weights.
    total = float(power_weights(base, 1.0).sum())
    q = np.array([selection_probability(b, 1.0, total) for b in base])
    assert q.sum() == pytest.approx(1.0)
    assert q[0] == pytest.approx((0.4 + 1e-6) / total) and 0 < q[4] < 1e-4  # BALD 0: the floor keeps a chance
    # The top key is item i with that probability (Gumbel-max), over many seeds.
    firsts = np.bincount([int(np.argmax(gumbel_keys(base, 1.0, seed=s))) for s in range(20_000)], minlength=5)
    np.testing.assert_allclose(firsts / 20_000, q, atol=0.012)
    # beta sharpens the draw toward top-k BALD; the registered strategy draws by mutual information.
    assert power_weights(base, 4.0)[0] / power_weights(base, 4.0).sum() > q[0]
    samples = np.random.default_rng(0).dirichlet(np.ones(3), size=(30, 4))
    keys = acquisition_scores("power_bald", samples, seed=7)
    from modelsvc import uncertainty as U

    np.testing.assert_allclose(
        keys, gumbel_keys(U.mutual_information(samples), POWER_BETA, seed=7)
    )
    assert strategy_get("power_bald").power == POWER_BETA and not strategy_get("power_bald").batch_aware
