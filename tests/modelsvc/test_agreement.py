"""Agreement statistics: published examples, hand-checkable cases, intervals and seeds."""

from __future__ import annotations

import numpy as np
import pytest

from modelsvc.agreement import (
    agreement_report,
    agreement_with_reference,
    flip_noise_truth,
    label_counts,
)

nan = np.nan

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the nominal example with missing data:
# 4 observers x 12 units, values 1..5; published alpha = 0.743.
KRIPPENDORFF_2011 = (
    np.array(
        [
            [1, 2, 3, 3, 2, 1, 4, 1, 2, nan, nan, nan],
            [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, nan, 3],
            [nan, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, nan],
            [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, nan],
        ]
    ).T
    - 1
)

# Fleiss (1971) as tabulated on Wikipedia ("Fleiss' kappa", worked example): 10 subjects, 14 raters each,
# 5 categories; published kappa = 0.210.
FLEISS_TABLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def ratings_from_counts(table: np.ndarray) -> np.ndarray:
    """(N, C) counts with a constant row sum R -> an (N, R) ratings matrix (rater identity arbitrary)."""
    return np.stack([np.repeat(np.arange(table.shape[1]), row) for row in table]).astype(float)


def noisy_team(n: int, raters: int, flip: float, n_labels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_labels, n)
    cols = []
    for _ in range(raters):
        flipped = rng.random(n) < flip
        cols.append(np.where(flipped, (truth + rng.integers(1, n_labels, n)) % n_labels, truth))
    return np.stack(cols, axis=1).astype(float), truth


def test_krippendorff_published_nominal_example() -> None:
    report = agreement_report(KRIPPENDORFF_2011, 5, n_boot=50)
    assert report.alpha.value == pytest.approx(0.743, abs=5e-4)
    assert report.alpha.n_items == 11  # the unit with a single value is not pairable
    assert report.n_raters == 4 and report.n_items == 12


def test_fleiss_published_example() -> None:
    report = agreement_report(ratings_from_counts(FLEISS_TABLE), 5, n_boot=50)
    assert report.fleiss_kappa.value == pytest.approx(0.210, abs=5e-4)
    assert report.fleiss_kappa.n_items == 10


def test_cohen_kappa_by_hand() -> None:
    # p_o = 3/4, p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2  ->  kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2
    ratings = np.array([[0, 0], [0, 1], [1, 1], [1, 1]], dtype=float)
    report = agreement_report(ratings, 2, n_boot=50)
    assert report.pairwise_kappa[(0, 1)].value == pytest.approx(0.5)
    assert report.pairwise_kappa[(0, 1)].n_items == 4
    assert report.per_rater[0].value == pytest.approx(0.5)
    assert report.per_rater[1].value == pytest.approx(0.5)


def test_perfect_agreement_is_one_and_pairs_without_shared_items_are_absent() -> None:
    ratings = np.array([[0, 0, -1], [1, 1, -1], [2, 2, -1], [-1, -1, 1]], dtype=float)
    report = agreement_report(ratings, 3, n_boot=50)
    assert report.alpha.value == pytest.approx(1.0)
    assert report.fleiss_kappa.value == pytest.approx(1.0)
    assert set(report.pairwise_kappa) == {(0, 1)}
    assert report.per_rater[2].value is None and report.per_rater[2].n_items == 0


def test_fleiss_uses_the_modal_rating_count() -> None:
    # six items rated by 3, two by 2, one by 1: Fleiss' formula needs one count, so the six count
    ratings = np.array(
        [[0, 0, 0], [1, 1, 0], [1, 1, 1], [0, 0, 1], [2, 2, 2], [2, 1, 2], [0, 0, nan], [1, nan, 1], [2, nan, nan]]
    )
    report = agreement_report(ratings, 3, n_boot=50)
    assert report.fleiss_kappa.n_items == 6
    assert report.alpha.n_items == 8


def test_undefined_figures_are_none() -> None:
    one_label = agreement_report(np.zeros((5, 2)), 3, n_boot=20)
    assert one_label.alpha.value is None and one_label.alpha.low is None
    assert one_label.fleiss_kappa.value is None
    assert one_label.pairwise_kappa[(0, 1)].value is None
    single_item = agreement_report(np.array([[0.0, 1.0]]), 2, n_boot=20)
    assert single_item.alpha.value is None
    empty = agreement_report(np.zeros((0, 3)), 2, n_boot=20)
    assert empty.alpha.value is None and empty.pairwise_kappa == {}


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        agreement_report(np.array([[0, 3]]), 3)
    with pytest.raises(ValueError):
        agreement_report(np.array([[0, 0.5]]), 3)
    with pytest.raises(ValueError):
        agreement_report(np.array([0, 1]), 3)
    with pytest.raises(ValueError):
        agreement_report(np.array([[0, 1]]), 2, level=1.0)


def test_intervals_contain_the_value_and_depend_only_on_the_seed() -> None:
    ratings, _ = noisy_team(300, 3, 0.2, 3, seed=1)
    first = agreement_report(ratings, 3, seed=7, n_boot=200)
    again = agreement_report(ratings, 3, seed=7, n_boot=200)
    other = agreement_report(ratings, 3, seed=8, n_boot=200)
    assert first == again
    assert first.alpha.low != other.alpha.low
    estimates = [first.alpha, first.fleiss_kappa, *first.pairwise_kappa.values(), *first.per_label, *first.per_rater]
    for est in estimates:
        assert est.value is not None and est.low is not None and est.high is not None
        assert est.low <= est.value <= est.high
        assert est.high - est.low < 0.3


def test_per_label_and_per_rater_single_out_the_weak_spot() -> None:
    ratings, truth = noisy_team(400, 3, 0.05, 3, seed=2)
    rng = np.random.default_rng(3)
    ratings[:, 2] = rng.integers(0, 3, 400)  # rater 2 guesses
    confused = (truth == 0) & (rng.random(400) < 0.5)
    ratings[confused, 0] = 1  # rater 0 mixes label 0 up with label 1
    report = agreement_report(ratings, 3, n_boot=50)
    assert report.per_rater[2].value < 0.1 < report.per_rater[0].value
    assert report.per_label[2].value > report.per_label[0].value


def test_flip_noise_truth_by_hand_and_against_a_large_simulation() -> None:
    assert flip_noise_truth(0.0, np.ones(3)) == pytest.approx((1.0, 1.0))
    # two labels, 15% flips: agreement .85^2 + .15^2 = .745, chance .5 -> kappa .49
    assert flip_noise_truth(0.15, np.ones(2)) == pytest.approx((0.745, 0.49))
    ratings, _ = noisy_team(4000, 2, 0.15, 4, seed=4)
    report = agreement_report(ratings, 4, n_boot=100)
    _, kappa = flip_noise_truth(0.15, np.ones(4))
    for est in (report.alpha, report.fleiss_kappa, report.pairwise_kappa[(0, 1)]):
        assert est.low <= kappa <= est.high


def test_agreement_with_reference() -> None:
    labels = np.array([0, 1, 1, 2, nan, 2])
    reference = np.array([0, 1, 0, 2, 1, -1])
    accuracy, kappa, confusion = agreement_with_reference(labels, reference, 3, seed=0, n_boot=100)
    assert accuracy.value == pytest.approx(0.75) and accuracy.n_items == 4
    assert accuracy.low <= accuracy.value <= accuracy.high
    # p_o = 3/4; margins ref (2,1,1)/4, labels (1,2,1)/4 -> p_e = (2+2+1)/16 = 5/16
    assert kappa.value == pytest.approx((0.75 - 5 / 16) / (1 - 5 / 16))
    assert confusion.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_label_counts() -> None:
    assert label_counts(np.array([[0, 1, -1], [2, 2, nan]]), 3).tolist() == [[1, 1, 0], [0, 0, 2]]
