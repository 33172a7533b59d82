"""Calibration metrics against cases whose answer is known."""

from __future__ import annotations

import numpy as np

from modelsvc.calibration import ece_mce, ece_noise_floor


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
