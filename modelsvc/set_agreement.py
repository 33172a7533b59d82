"""Agreement on sets of labels (multi-label answers): pure functions, each figure with a bootstrap interval.

``indicators`` has shape (N, R, C): N items, R raters, C labels; ``indicators[i, r, c]`` is 1 when rater r
put label c in item i's set, 0 when they left it out, and -1 on every label when r did not rate i. The
figures:

- per label      Krippendorff's alpha (``krippendorff``, nominal) and Fleiss' kappa (``statsmodels``) of the
                 label's 0/1 indicators: how well raters agree on whether THIS label applies.
- overall        the same two statistics pooled over every (item, label) unit: one binary judgement per
                 label per item, so a common label and a rare one weigh by how often they are judged.
- MASI alpha     Krippendorff's alpha over whole sets with the MASI distance (Passonneau 2006):
                 1 - Jaccard x monotonicity (1 equal sets, 2/3 one inside the other, 1/3 overlapping,
                 0 disjoint); two empty sets are at distance 0. ``krippendorff.alpha`` takes the distance
                 as its level of measurement.

Point values come from the libraries. The per-label and MASI bootstrap replicates (C labels x n_boot
draws, the bulk of the work) use closed forms of the same statistics, vectorised over the draws
(``binary_alpha``, ``binary_fleiss``, ``masi_alpha_draws``; tests check each against the library on
every draw):

- alpha = 1 - (n - 1) * sum_u [2 n0_u n1_u / (m_u - 1)] / (2 n0 n1) over units u with m_u >= 2 ratings,
  n0 / n1 the 0s / 1s among them and n = n0 + n1 (Krippendorff 2011, nominal, two values);
- kappa = (P - Pe) / (1 - Pe), P the mean over items of (n0^2 + n1^2 - m) / (m (m - 1)), Pe = p0^2 + p1^2.

Intervals are percentile bootstraps that resample ITEMS (an item's labels stay together, so the pooled
figure's interval is not narrowed by treating one item's labels as independent), sharing one seeded set
of replicates with ``modelsvc.agreement``'s conventions: undefined replicates are dropped, a figure is
undefined (None) with fewer than 2 usable items or a single value among them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import krippendorff
import numpy as np

from modelsvc.agreement import (
    MISSING,
    Estimate,
    _alpha,
    _check_boot,
    _defined,
    _fleiss,
    _fleiss_items,
    _interval,
    _resamples,
)


@dataclass(frozen=True)
class LabelAgreement:
    """One label's agreement: alpha and Fleiss' kappa of its 0/1 indicators, and how often it was given."""

    alpha: Estimate
    fleiss_kappa: Estimate
    share: float  # the share of (rater, item) answers that include the label, in [0, 1]


@dataclass(frozen=True)
class SetAgreementReport:
    per_label: tuple[LabelAgreement, ...]  # (C,)
    alpha: Estimate  # pooled over (item, label) units
    fleiss_kappa: Estimate  # pooled over (item, label) units
    masi_alpha: Estimate  # whole sets, MASI distance
    n_items: int
    n_raters: int
    n_labels: int


def masi_distance(a: frozenset[int], b: frozenset[int]) -> float:
    """MASI distance between two sets: 1 - |a & b| / |a | b| x m (m: 1 equal, 2/3 subset, 1/3 overlap, 0)."""
    if a == b:
        return 0.0
    inter = len(a & b)
    if not inter:
        return 1.0
    m = 2 / 3 if (a <= b or b <= a) else 1 / 3
    return 1.0 - inter / len(a | b) * m


def _binary_counts(indicators: np.ndarray) -> np.ndarray:
    """(N, R, C) indicators -> (N, C, 2) how many raters left each label out / put it in."""
    rated = indicators != MISSING
    ones = ((indicators == 1) & rated).sum(axis=1)
    zeros = ((indicators == 0) & rated).sum(axis=1)
    return np.stack([zeros, ones], axis=2).astype(np.int64)


def _set_codes(indicators: np.ndarray) -> tuple[np.ndarray, list[frozenset[int]]]:
    """(N, R) codes of the distinct sets given (-1 where not rated), and the sets in code order."""
    n, r, _ = indicators.shape
    codes = np.full((n, r), MISSING, dtype=np.int64)
    seen: dict[frozenset[int], int] = {}
    for i in range(n):
        for k in range(r):
            row = indicators[i, k]
            if (row == MISSING).all():
                continue
            key = frozenset(np.flatnonzero(row == 1).tolist())
            codes[i, k] = seen.setdefault(key, len(seen))
    return codes, list(seen)


def _masi_alpha(value_counts: np.ndarray, distances: np.ndarray) -> float | None:
    pairable = value_counts[value_counts.sum(axis=1) >= 2]
    if len(pairable) < 2 or np.count_nonzero(pairable.sum(axis=0)) < 2:
        return None

    def metric(v1, v2, i1, i2, n_v, dtype=np.float64):  # type: ignore[no-untyped-def]
        return distances[i1, i2].astype(dtype)

    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        return _defined(
            float(krippendorff.alpha(value_counts=pairable, level_of_measurement=metric))  # type: ignore[arg-type]
        )


def binary_alpha(binary: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Nominal alpha of (N, 2) 0/1 counts on each of B item draws (B, N); NaN where undefined. -> (B,)"""
    m = binary.sum(axis=1)
    pairable = m >= 2
    n0 = np.where(pairable, binary[:, 0], 0).astype(np.float64)
    n1 = np.where(pairable, binary[:, 1], 0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d_unit = np.where(pairable, 2.0 * n0 * n1 / np.maximum(m - 1, 1), 0.0)
        big_n0, big_n1 = n0[draws].sum(axis=1), n1[draws].sum(axis=1)
        n = big_n0 + big_n1
        alpha = 1.0 - (n - 1.0) * d_unit[draws].sum(axis=1) / (2.0 * big_n0 * big_n1)
    units = pairable[draws].sum(axis=1)
    return np.where((units >= 2) & (big_n0 > 0) & (big_n1 > 0), alpha, np.nan)


def masi_alpha_draws(value_counts: np.ndarray, distances: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Alpha with a distance matrix (V, V) over values, from (N, V) value counts, on B item draws (B, N).

    The closed form alpha = 1 - (n - 1) * sum_u [v_u D v_u / (m_u - 1)] / (t D t), over units with
    m_u >= 2 ratings, t their value totals and n their ratings; NaN where undefined. -> (B,)
    """
    if not len(draws):
        return np.zeros(0)
    m = value_counts.sum(axis=1)
    pairable = m >= 2
    vc = np.where(pairable[:, None], value_counts, 0).astype(np.float64)  # (N, V)
    d_unit = np.zeros(len(vc))  # (N,) v_u D v_u over the few values each unit holds (R at most)
    for u in np.flatnonzero(pairable):
        held = np.flatnonzero(vc[u])
        v = vc[u, held]
        d_unit[u] = v @ distances[np.ix_(held, held)] @ v / (m[u] - 1)
    weights = _weights(draws, len(vc))  # (B, N)
    totals = weights @ vc  # (B, V)
    n = totals.sum(axis=1)
    expected = ((totals @ distances) * totals).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (n - 1.0) * (weights @ d_unit) / expected
    units = (weights * pairable[None, :]).sum(axis=1)
    return np.where((units >= 2) & (expected > 0), alpha, np.nan)


def _weights(draws: np.ndarray, n_items: int) -> np.ndarray:
    """(B, N) how many times each item is in each draw."""
    if not len(draws):
        return np.zeros((0, n_items))
    return np.stack([np.bincount(idx, minlength=n_items) for idx in draws]).astype(np.float64)


def pooled_alpha_draws(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Nominal alpha over every (item, label) unit of (N, C, 2) 0/1 counts, per draw (weights (B, N)). -> (B,)"""
    if not len(weights):
        return np.zeros(0)
    m = counts[:, 0, :].sum(axis=1) if counts.shape[1] else np.zeros(len(counts))  # (N,) raters per item
    pairable = m >= 2
    n0 = np.where(pairable[:, None], counts[:, :, 0], 0).astype(np.float64)  # (N, C)
    n1 = np.where(pairable[:, None], counts[:, :, 1], 0).astype(np.float64)
    d_item = (2.0 * n0 * n1).sum(axis=1) / np.maximum(m - 1, 1)  # (N,) every label's disagreement
    big_n0, big_n1 = weights @ n0.sum(axis=1), weights @ n1.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 - (big_n0 + big_n1 - 1.0) * (weights @ d_item) / (2.0 * big_n0 * big_n1)
    items = weights @ pairable.astype(np.float64)
    return np.where((items >= 2) & (big_n0 > 0) & (big_n1 > 0), alpha, np.nan)


def pooled_fleiss_draws(counts: np.ndarray, in_fleiss: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Fleiss' kappa over the (item, label) units of the modal-count items, per draw (weights (B, N)). -> (B,)"""
    if not len(weights):
        return np.zeros(0)
    c = counts.astype(np.float64)
    m = c[:, 0, :].sum(axis=1) if counts.shape[1] else np.zeros(len(counts))
    keep = in_fleiss.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_units = np.where(m >= 2, ((c**2).sum(axis=2).sum(axis=1) - m * c.shape[1]) / (m * (m - 1)), 0.0)
        w = weights * keep[None, :]
        units = w @ np.full(len(c), float(c.shape[1]))
        p_bar = (w @ p_units) / units
        p1 = (w @ c[:, :, 1].sum(axis=1)) / (w @ (m * c.shape[1]))
        p_e = p1**2 + (1.0 - p1) ** 2
        kappa = (p_bar - p_e) / (1.0 - p_e)
    items = w @ np.ones(len(c))
    return np.where((items >= 2) & (p_e < 1.0), kappa, np.nan)


def masi_distances(sets: list[frozenset[int]], n_labels: int) -> np.ndarray:
    """(V, V) MASI distances between V sets of label indices (``masi_distance``, vectorised)."""
    s = np.zeros((len(sets), n_labels), dtype=np.float64)
    for i, chosen in enumerate(sets):
        s[i, list(chosen)] = 1.0
    size = s.sum(axis=1)
    inter = s @ s.T
    union = size[:, None] + size[None, :] - inter
    equal = (inter == size[:, None]) & (inter == size[None, :])
    subset = (inter == size[:, None]) | (inter == size[None, :])
    mono = np.where(equal, 1.0, np.where(subset, 2 / 3, np.where(inter > 0, 1 / 3, 0.0)))
    with np.errstate(divide="ignore", invalid="ignore"):
        jaccard = np.where(union > 0, inter / union, 1.0)
    return np.where(equal, 0.0, 1.0 - jaccard * mono)


def _label_estimate(value: float | None, replicates: np.ndarray, n_items: int, level: float) -> Estimate:
    if value is None:
        return Estimate(None, None, None, n_items)
    low, high = _interval([float(v) if np.isfinite(v) else None for v in replicates], level)
    return Estimate(value, low, high, n_items)


def binary_fleiss(binary: np.ndarray, in_fleiss: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Fleiss' kappa of (N, 2) 0/1 counts on each of B item draws (B, N), on the drawn items that have the
    modal rating count (``in_fleiss``, as ``modelsvc.agreement`` does); NaN where undefined. -> (B,)"""
    if not len(draws):
        return np.zeros(0)
    weight = in_fleiss[draws].astype(np.float64)  # (B, N)
    m = binary.sum(axis=1).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_item = np.where(m >= 2, ((binary.astype(np.float64) ** 2).sum(axis=1) - m) / (m * (m - 1)), 0.0)
        kept = weight.sum(axis=1)
        total = (m[draws] * weight).sum(axis=1)
        p1 = (binary[:, 1][draws] * weight).sum(axis=1) / total
        p_e = p1**2 + (1.0 - p1) ** 2
        kappa = ((p_item[draws] * weight).sum(axis=1) / kept - p_e) / (1.0 - p_e)
    return np.where((kept >= 2) & (p_e < 1.0), kappa, np.nan)


def set_agreement_report(
    indicators: np.ndarray, *, seed: int = 0, n_boot: int = 1000, level: float = 0.95
) -> SetAgreementReport:
    """Per-label, pooled and MASI agreement of R raters' label sets on N items over C labels.

    indicators: (N, R, C) 0/1, -1 where a rater did not rate an item. Every interval comes from the
    same ``n_boot`` seeded resamples of the N items, at confidence ``level``.
    """
    _check_boot(n_boot, level)
    ind = np.asarray(indicators, dtype=np.int64)
    if ind.ndim != 3:
        raise ValueError(f"indicators must be (N, R, C), got shape {ind.shape}")
    n, n_raters, n_labels = ind.shape
    counts = _binary_counts(ind)  # (N, C, 2)
    raters = counts[:, 0, :].sum(axis=1) if n_labels else np.zeros(n, dtype=np.int64)  # (N,)
    pairable = int((raters >= 2).sum())
    draws = _resamples(n, seed, n_boot)
    in_fleiss = _fleiss_items(np.stack([raters, np.zeros_like(raters)], axis=1))

    per_label = []
    answered = int((ind[:, :, 0] != MISSING).sum()) if n_labels else 0
    draw_matrix = np.stack(draws) if draws else np.zeros((0, n), dtype=np.int64)  # (B, N)
    fleiss_items = np.flatnonzero(in_fleiss)
    for c in range(n_labels):
        binary = counts[:, c, :]  # (N, 2)
        alpha_reps = binary_alpha(binary, draw_matrix)
        # Fleiss' kappa on the drawn items that have the modal rating count, as modelsvc.agreement does.
        fleiss_reps = binary_fleiss(binary, in_fleiss, draw_matrix)
        share = float(binary[:, 1].sum() / answered) if answered else 0.0
        per_label.append(
            LabelAgreement(
                _label_estimate(_alpha(binary), alpha_reps, pairable, level),
                _label_estimate(_fleiss(binary[fleiss_items]), fleiss_reps, int(in_fleiss.sum()), level),
                share,
            )
        )

    # Pooled over (item, label) units; units of fewer than 2 items are one item's labels: not a sample.
    weights = _weights(draw_matrix, n)  # (B, N) how often each item is drawn
    enough = int((raters >= 2).sum()) >= 2
    alpha = _label_estimate(
        _alpha(counts.reshape(-1, 2)) if enough else None, pooled_alpha_draws(counts, weights), pairable, level
    )
    kept = counts[in_fleiss].reshape(-1, 2)
    fleiss = _label_estimate(
        _fleiss(kept) if int(in_fleiss.sum()) >= 2 else None,
        pooled_fleiss_draws(counts, in_fleiss, weights),
        int(in_fleiss.sum()),
        level,
    )

    codes, sets = _set_codes(ind)
    value_counts = np.zeros((n, max(len(sets), 1)), dtype=np.int64)
    rows, cols = np.nonzero(codes != MISSING)
    np.add.at(value_counts, (rows, codes[rows, cols]), 1)
    distances = masi_distances(sets, n_labels) if sets else np.zeros((1, 1))
    masi_reps = masi_alpha_draws(value_counts, distances, draw_matrix)
    # The point value by the same closed form (krippendorff's coincidences are (N, V, V) for V distinct sets).
    point = masi_alpha_draws(value_counts, distances, np.arange(n)[None, :])
    masi = _label_estimate(_defined(float(point[0])) if n else None, masi_reps, pairable, level)
    return SetAgreementReport(
        per_label=tuple(per_label),
        alpha=Estimate(alpha.value, alpha.low, alpha.high, pairable),
        fleiss_kappa=Estimate(fleiss.value, fleiss.low, fleiss.high, int(in_fleiss.sum())),
        masi_alpha=Estimate(masi.value, masi.low, masi.high, pairable),
        n_items=n,
        n_raters=n_raters,
        n_labels=n_labels,
    )
