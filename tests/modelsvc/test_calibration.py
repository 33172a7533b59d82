"""Calibration metrics against cases whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from modelsvc.calibration import (
    MIN_N_TO_JUDGE,
    accuracy_interval,
    ece_interval,
    ece_mce,
    ece_noise_floor,
    evaluate_predictions,
    fit_temperature,
    small_sample_summary,
    temperature_choose,
    tempered_samples,
)


def _binary(confidence: np.ndarray) -> np.ndarray:
    return np.stack([confidence, 1.0 - confidence], axis=1)  # (N, 2)


def test_certain_predictions_have_no_noise_floor() -> None:
    assert ece_noise_floor(_binary(np.ones(500))) == 0.0


def test_noise_floor_shrinks_like_one_over_root_n() -> None:
    rng = np.random.default_rng(0)
    small = ece_noise_floor(_binary(rng.uniform(0.5, 1.0, 1_000)))
    large = ece_noise_floor(_binary(rng.uniform(0.5, 1.0, 16_000)))
    assert 0.015 < small < 0.05  # the scale the replay's 1,000-document test split sees
    assert large < small / 2.5  # sqrt(16) = 4, less a little for the fixed bins


def test_a_perfectly_calibrated_model_scores_near_its_floor_and_a_wrong_one_does_not() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.5, 1.0, 4_000)
    probs = _binary(p)
    y_true = (rng.random(4_000) >= p).astype(int)  # class 0 with probability p: calibrated by construction
    floor = ece_noise_floor(probs)
    assert ece_mce(probs, y_true)[0] < 3 * floor
    overconfident = _binary(np.minimum(p + 0.15, 1.0))
    assert ece_mce(overconfident, y_true)[0] > 3 * floor


# --- the temperature rule: applied only when it lowers the cross-fitted NLL ----------------------------



def _logits_at(true_temperature: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, 2) logits and labels drawn from softmax(logits / true_temperature): T = true_temperature is right."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 3.0, n)
    logits = np.stack([z, -z], axis=1)[:, None, :]  # (N, 1, 2)
    p0 = tempered_samples(logits, true_temperature).mean(1)[:, 0]
    y = (rng.random(n) >= p0).astype(np.int64)
    return logits, y


def test_a_temperature_that_helps_out_of_fold_is_applied() -> None:
    logits, y = _logits_at(2.5, 2_000, seed=3)  # the logits are overconfident by a factor 2.5
    choice = temperature_choose(logits, y, np.arange(len(y)) % 5)
    assert choice.chosen == "fitted"
    assert 2.0 < choice.temperature < 3.1
    assert choice.nll_fitted < choice.nll_baseline
    record = choice.as_record()
    assert record["chosen"] == "fitted" and record["nll_cross_fitted"] < record["nll_baseline"]


def test_a_temperature_that_only_fits_noise_is_not_applied() -> None:
    # Already calibrated (T = 1 is right) and few items: the in-sample fit still moves T off 1 a little,
    # and lowers the in-sample NLL; out of fold it does not help on most seeds, and then T = 1 stays.
    kept = 0
    for seed in range(10):
        logits, y = _logits_at(1.0, 60, seed=seed)
        choice = temperature_choose(logits, y, np.arange(len(y)) % 5)
        assert choice.candidate != 1.0
        assert choice.temperature in (1.0, choice.candidate)
        assert (choice.temperature == choice.candidate) == (choice.nll_fitted < choice.nll_baseline)
        kept += choice.chosen == "baseline"
    assert kept >= 6


def test_the_previous_temperature_is_kept_when_the_fit_does_not_beat_it() -> None:
    logits, y = _logits_at(2.0, 400, seed=4)

    def bad_fit(lg: np.ndarray, yy: np.ndarray) -> float:
        return 0.2  # far too sharp: worse than the baseline on every group

    choice = temperature_choose(logits, y, np.arange(len(y)) % 2, baseline=2.0, fit=bad_fit)
    assert choice.chosen == "baseline" and choice.temperature == 2.0


def test_one_group_cannot_cross_fit_so_the_baseline_stays() -> None:
    logits, y = _logits_at(2.5, 200, seed=5)
    choice = temperature_choose(logits, y, np.zeros(len(y), dtype=int))
    assert choice.chosen == "baseline" and choice.temperature == 1.0


# --- intervals on small samples ---------------------------------------------------------------------


def test_wilson_interval_of_an_accuracy() -> None:
    lo, hi = accuracy_interval(8, 10)
    assert 0.48 < lo < 0.50 and 0.94 < hi < 0.95  # Wilson 95 % for 8/10: 0.490-0.943
    lo, hi = accuracy_interval(800, 1_000)
    assert hi - lo < 0.06
    assert accuracy_interval(0, 0) == (0.0, 1.0)


def test_ece_interval_is_wide_on_ten_items_and_narrow_on_thousands() -> None:
    rng = np.random.default_rng(7)
    p = rng.uniform(0.5, 1.0, 4_000)
    probs = _binary(p)
    y = (rng.random(4_000) >= p).astype(int)
    small = ece_interval(probs[:10], y[:10])
    large = ece_interval(probs, y)
    assert small[1] - small[0] > 0.15
    assert large[1] - large[0] < 0.05
    assert large[0] <= ece_mce(probs, y)[0] <= large[1]


def test_metrics_carry_their_intervals_and_say_when_n_is_too_small() -> None:
    rng = np.random.default_rng(8)
    p = rng.uniform(0.5, 1.0, 300)
    probs = _binary(p)
    y = (rng.random(300) >= p).astype(int)
    few = evaluate_predictions(probs[:10], probs[:10], y[:10], {})["intervals"]
    assert few["n"] == 10 and few["too_small"] is True and few["min_n"] == MIN_N_TO_JUDGE
    assert few["accuracy"][0] < few["accuracy"][1] and few["ece"][0] <= few["ece"][1]
    many = small_sample_summary(probs, y)
    assert many["n"] == 300 and many["too_small"] is False


def test_on_ten_items_a_perfectly_calibrated_model_shows_a_large_ece() -> None:
    rng = np.random.default_rng(9)
    p = rng.uniform(0.5, 1.0, 10)
    summary = small_sample_summary(_binary(p), (rng.random(10) >= p).astype(int))
    assert summary["ece_noise_floor"] > 0.1  # an ECE of 0.28 on 10 items says nothing


def test_importance_weights_are_normalised_clipped_and_uniform_without_a_draw() -> None:
    from modelsvc.calibration import importance_weights

    q = np.array([0.01, 0.001, np.nan, 1e-9])
    n = np.array([100, 100, np.nan, 100])
    w = importance_weights(q, n)
    assert w.mean() == pytest.approx(1.0)
    assert w[1] == pytest.approx(10 * w[0])  # 1 / (N q): ten times less likely, ten times the weight
    assert w[3] == pytest.approx(10 * w[2])  # the 1e-9 draw is clipped at 10, not allowed to carry the fit
    assert importance_weights(np.full(3, np.nan), np.full(3, np.nan)).tolist() == [1.0, 1.0, 1.0]


def _biased_sample() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A pool whose uncertain half is overconfident (true T 3) and confident half underconfident (true T 0.6),
    and a draw of 600 items with probability proportional to an uncertainty score, as power sampling does."""
    rng = np.random.default_rng(0)
    n = 6000
    uncertain = np.arange(n) < n // 2
    z = np.where(uncertain, rng.normal(0, 1.5, n), rng.normal(0, 3.0, n))  # model logit of class 1
    true_t = np.where(uncertain, 3.0, 0.6)
    y = (rng.random(n) < 1 / (1 + np.exp(-z / true_t))).astype(np.int64)
    logits = np.stack([np.zeros(n), z], axis=1)[:, None, :]  # (N, 1, 2)
    score = np.where(uncertain, 1.0, 0.05)
    q = score / score.sum()
    keys = np.log(score) + rng.gumbel(size=n)
    drawn = np.argsort(-keys)[:600]
    return logits, y, drawn, q


def test_importance_weights_pull_the_temperature_fit_to_the_pool() -> None:
    from modelsvc.calibration import fit_temperature, importance_weights

    logits, y, drawn, q = _biased_sample()
    pool_t = fit_temperature(logits, y)
    plain = fit_temperature(logits[drawn], y[drawn])
    w = importance_weights(q[drawn], np.full(len(drawn), len(y)))
    weighted = fit_temperature(logits[drawn], y[drawn], w)
    # The draw is ~95 % uncertain items, so the plain fit lands near their T; the weights undo that.
    assert abs(np.log(weighted / pool_t)) < 0.5 * abs(np.log(plain / pool_t))


def test_temperature_choose_weights_the_fit_and_both_nlls() -> None:
    from modelsvc.calibration import importance_weights

    logits, y, drawn, q = _biased_sample()
    w = importance_weights(q[drawn], np.full(len(drawn), len(y)))
    seen: list[np.ndarray | None] = []

    def fit(lg: np.ndarray, yy: np.ndarray, weights: np.ndarray | None = None) -> float:
        seen.append(weights)
        return fit_temperature(lg, yy, weights)

    groups = np.arange(len(drawn)) % 5
    choice = temperature_choose(logits[drawn], y[drawn], groups, fit=fit, weights=w)
    assert len(seen) == 6 and all(s is not None for s in seen)  # the candidate and each of the 5 folds
    assert sum(len(s) for s in seen[1:]) == 4 * len(drawn)  # each fold fit sees the others' weights
    record = choice.as_record()
    assert record["weighted"] and 0 < record["effective_n"] < len(drawn)
    unweighted = temperature_choose(logits[drawn], y[drawn], groups)
    assert unweighted.as_record()["weighted"] is False
    assert choice.nll_baseline != pytest.approx(unweighted.nll_baseline)
