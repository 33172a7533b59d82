import math

import numpy as np
import pytest

from modelsvc import uncertainty as U


def test_disagreeing_confident_samples_are_pure_epistemic() -> None:
    s = np.array([[[1.0, 0.0], [0.0, 1.0]]])  # (1, 2, 2)
    assert U.mutual_information(s)[0] == pytest.approx(math.log(2))
    assert U.expected_entropy(s)[0] == pytest.approx(0.0, abs=1e-9)
    assert U.predictive_entropy(s)[0] == pytest.approx(math.log(2))
    assert U.variation_ratio(s)[0] == pytest.approx(0.5)
    assert U.margin(s)[0] == pytest.approx(0.0)


def test_agreeing_uncertain_samples_are_pure_aleatoric() -> None:
    s = np.array([[[0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]])
    assert U.mutual_information(s)[0] == pytest.approx(0.0, abs=1e-12)
    assert U.expected_entropy(s)[0] == pytest.approx(math.log(2))


def test_hand_computed_three_class_case() -> None:
    s = np.array([[[0.7, 0.2, 0.1], [0.5, 0.3, 0.2]]])
    mean = np.array([0.6, 0.25, 0.15])
    h = lambda p: -sum(x * math.log(x) for x in p)  # noqa: E731
    assert U.predictive_entropy(s)[0] == pytest.approx(h(mean))
    assert U.expected_entropy(s)[0] == pytest.approx((h([0.7, 0.2, 0.1]) + h([0.5, 0.3, 0.2])) / 2)
    assert U.margin(s)[0] == pytest.approx(0.35)
    assert U.least_confidence(s)[0] == pytest.approx(0.4)
    assert U.variation_ratio(s)[0] == pytest.approx(0.0)


def test_mutual_information_is_never_negative() -> None:
    rng = np.random.default_rng(0)
    s = rng.dirichlet(np.ones(4), size=(50, 8))
    assert (U.mutual_information(s) >= 0).all()
    assert (U.mutual_information(s) <= U.predictive_entropy(s) + 1e-12).all()


def test_rejects_wrong_shape() -> None:
    with pytest.raises(ValueError, match="N, K, C"):
        U.mutual_information(np.ones((3, 2)))
