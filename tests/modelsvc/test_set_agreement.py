"""Agreement on label sets: per label, pooled and MASI, checked against the libraries computed another way."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest

from modelsvc.agreement import agreement_report
from modelsvc.set_agreement import masi_distance, set_agreement_report

# 8 items, 3 raters, 3 labels; rater 2 skipped items 6 and 7 (-1 on every label).
SETS = [
    [{0}, {0}, {0}],
    [{0, 1}, {0, 1}, {0}],
    [set(), set(), set()],
    [{2}, {2}, {1, 2}],
    [{1}, {1}, {1}],
    [{0, 2}, {2}, {0, 2}],
    [{1, 2}, {1, 2}, None],
    [{0}, {1}, None],
]


def _indicators(sets, n_labels=3):
    out = np.full((len(sets), len(sets[0]), n_labels), -1, dtype=np.int64)
    for i, row in enumerate(sets):
        for r, chosen in enumerate(row):
            if chosen is not None:
                out[i, r] = [1 if c in chosen else 0 for c in range(n_labels)]
    return out


def test_masi_distance_follows_passonneau() -> None:
    assert masi_distance(frozenset(), frozenset()) == 0.0
    assert masi_distance(frozenset({1, 2}), frozenset({1, 2})) == 0.0
    assert masi_distance(frozenset({1, 2}), frozenset({1, 2, 3, 4})) == pytest.approx(1 - 0.5 * 2 / 3)
    assert masi_distance(frozenset({1, 2}), frozenset({2, 3})) == pytest.approx(1 - (1 / 3) * (1 / 3))
    assert masi_distance(frozenset({1}), frozenset({2})) == 1.0
    assert masi_distance(frozenset(), frozenset({2})) == 1.0


def test_per_label_figures_are_the_single_label_report_on_each_labels_indicators() -> None:
    ind = _indicators(SETS)
    report = set_agreement_report(ind, seed=3, n_boot=50)
    for c in range(3):
        binary = ind[:, :, c]  # (N, R) 0/1/-1: a two-label ratings matrix
        single = agreement_report(binary, 2, seed=3, n_boot=50)
        assert report.per_label[c].alpha.value == pytest.approx(single.alpha.value)
        assert report.per_label[c].fleiss_kappa.value == pytest.approx(single.fleiss_kappa.value)
        assert report.per_label[c].alpha.low == pytest.approx(single.alpha.low)


def test_pooled_alpha_is_nominal_alpha_over_item_label_units() -> None:
    ind = _indicators(SETS)
    report = set_agreement_report(ind, seed=0, n_boot=50)
    units = ind.transpose(1, 0, 2).reshape(ind.shape[1], -1).astype(float)  # (R, N*C)
    units[units < 0] = np.nan
    expected = krippendorff.alpha(reliability_data=units, level_of_measurement="nominal")
    assert report.alpha.value == pytest.approx(expected)
    assert report.alpha.low is not None and report.alpha.low <= report.alpha.value <= report.alpha.high
    assert report.n_items == 8 and report.alpha.n_items == 8


def test_masi_alpha_is_one_on_perfect_agreement_and_lower_on_partial() -> None:
    perfect = _indicators([[s, s] for s in ({0}, {0, 1}, set(), {2}, {1, 2})])
    assert set_agreement_report(perfect, n_boot=20).masi_alpha.value == pytest.approx(1.0)
    partial = set_agreement_report(_indicators(SETS), n_boot=20)
    nominal_sets = set_agreement_report(_indicators(SETS), n_boot=0)
    assert partial.masi_alpha.value is not None and 0.0 < partial.masi_alpha.value < 1.0
    assert nominal_sets.masi_alpha.low is None  # no bootstrap asked


def test_too_little_to_measure_is_undefined_not_a_number() -> None:
    one = set_agreement_report(_indicators([[{0}, {0}]]), n_boot=10)
    assert one.alpha.value is None and one.masi_alpha.value is None
    assert all(label.alpha.value is None for label in one.per_label)


def test_the_vectorised_replicates_are_the_libraries_figures_on_each_draw() -> None:
    from modelsvc.agreement import _alpha, _fleiss, _fleiss_items, _resamples
    from modelsvc.set_agreement import binary_alpha, binary_fleiss

    ind = _indicators(SETS)
    draws = _resamples(len(SETS), 7, 40)
    matrix = np.stack(draws)
    for c in range(3):
        binary = np.stack([(ind[:, :, c] == 0).sum(axis=1), (ind[:, :, c] == 1).sum(axis=1)], axis=1)
        in_fleiss = _fleiss_items(binary)
        fast_alpha, fast_fleiss = binary_alpha(binary, matrix), binary_fleiss(binary, in_fleiss, matrix)
        for b, idx in enumerate(draws):
            slow = _alpha(binary[idx])
            assert (slow is None and np.isnan(fast_alpha[b])) or fast_alpha[b] == pytest.approx(slow)
            slow_k = _fleiss(binary[idx][in_fleiss[idx]])
            assert (slow_k is None and np.isnan(fast_fleiss[b])) or fast_fleiss[b] == pytest.approx(slow_k)


def test_the_masi_replicates_are_krippendorffs_alpha_on_each_draw() -> None:
    from modelsvc.agreement import _resamples
    from modelsvc.set_agreement import _masi_alpha, _set_codes, masi_alpha_draws

    ind = _indicators(SETS)
    codes, sets = _set_codes(ind)
    value_counts = np.zeros((len(SETS), len(sets)), dtype=np.int64)
    rows, cols = np.nonzero(codes >= 0)
    np.add.at(value_counts, (rows, codes[rows, cols]), 1)
    distances = np.array([[masi_distance(a, b) for b in sets] for a in sets])
    draws = _resamples(len(SETS), 11, 40)
    fast = masi_alpha_draws(value_counts, distances, np.stack(draws))
    for b, idx in enumerate(draws):
        slow = _masi_alpha(value_counts[idx], distances)
        assert (slow is None and np.isnan(fast[b])) or fast[b] == pytest.approx(slow)


def test_the_pooled_replicates_and_masi_matrix_match_the_slow_forms() -> None:
    from modelsvc.agreement import _alpha, _fleiss, _fleiss_items, _resamples
    from modelsvc.set_agreement import (
        _binary_counts,
        _weights,
        masi_distances,
        pooled_alpha_draws,
        pooled_fleiss_draws,
    )

    ind = _indicators(SETS)
    counts = _binary_counts(ind)
    raters = counts[:, 0, :].sum(axis=1)
    in_fleiss = _fleiss_items(np.stack([raters, np.zeros_like(raters)], axis=1))
    draws = _resamples(len(SETS), 5, 40)
    weights = _weights(np.stack(draws), len(SETS))
    fast_a, fast_k = pooled_alpha_draws(counts, weights), pooled_fleiss_draws(counts, in_fleiss, weights)
    for b, idx in enumerate(draws):
        slow_a = _alpha(counts[idx].reshape(-1, 2)) if (raters[idx] >= 2).sum() >= 2 else None
        assert (slow_a is None and np.isnan(fast_a[b])) or fast_a[b] == pytest.approx(slow_a)
        kept = idx[in_fleiss[idx]]
        slow_k = _fleiss(counts[kept].reshape(-1, 2)) if len(kept) >= 2 else None
        assert (slow_k is None and np.isnan(fast_k[b])) or fast_k[b] == pytest.approx(slow_k)
    sets = [frozenset(), frozenset({0}), frozenset({0, 1}), frozenset({1, 2}), frozenset({2})]
    expected = np.array([[masi_distance(a, b) for b in sets] for a in sets])
    assert masi_distances(sets, 3) == pytest.approx(expected)
