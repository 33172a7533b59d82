"""The promotion gate: does a freshly trained challenger replace the champion? Pure, no I/O.

The first model is promoted. Later, with a labeled holdout of at least ``MIN_HOLDOUT_LABELS``
documents covering 2+ classes, the challenger is promoted unless its accuracy is lower than the
champion's, measured on the same holdout documents, by more than the project's tolerance (a
challenger worse on the holdout beyond it is never promoted). The reason also gives the paired
evidence: how many holdout documents only one of the two models gets right, and a one-sided exact
McNemar p-value, so a user can see when a rejection rests on too few holdout labels (a 10 % holdout
rejects many better-trained challengers on noise; the remedy is more holdout labels or a wider
tolerance). With a smaller holdout the two models' accuracies on their own calibration splits are
compared with the same tolerance, and with no such figure the newer model, trained on more labels,
is promoted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from modelsvc.multilabel import example_f1

#: Below this McNemar p-value a rejection is called significant in the reason; above it, a hint to label more.
PROMOTION_ALPHA = 0.05
#: Fewer labeled holdout documents than this (or one class only) cannot judge a challenger.
MIN_HOLDOUT_LABELS = 10


@dataclass(frozen=True)
class PairedOutcome:
    """Champion and challenger on the same holdout documents."""

    champion_accuracy: float
    champion_only: int  # documents only the champion gets right
    challenger_only: int  # documents only the challenger gets right


def paired_outcome(champion_right: np.ndarray, challenger_right: np.ndarray) -> PairedOutcome:
    """Compare per-document correctness (N,) bool of the two models on the same N holdout documents."""
    champion_right = np.asarray(champion_right, dtype=bool)
    challenger_right = np.asarray(challenger_right, dtype=bool)
    return PairedOutcome(
        champion_accuracy=float(champion_right.mean()),
        champion_only=int((champion_right & ~challenger_right).sum()),
        challenger_only=int((challenger_right & ~champion_right).sum()),
    )


def multilabel_paired_outcome(
    champion_pred: np.ndarray, challenger_pred: np.ndarray, targets: np.ndarray
) -> tuple[PairedOutcome, float]:
    """Multi-label: (paired outcome, challenger's mean per-item F1) on the same N holdout items.

    champion_pred, challenger_pred: predicted sets (N, C) bool; targets (N, C) 0/1. The per-item
    outcome is the item's example F1 (1 when both sets are empty): it gives partial credit, unlike
    "the whole set right" (which few items reach with 35 labels, so almost no pair would be
    discordant), and it is not swamped by the many correctly absent labels, unlike per-item Hamming
    accuracy. ``champion_accuracy`` is then the champion's mean example F1; ``champion_only`` counts
    items the champion scores strictly better on, ``challenger_only`` the reverse: the sign test
    ``mcnemar_worse_p`` runs on them as McNemar runs on right/wrong pairs.
    """
    champ = example_f1(champion_pred, targets)
    chall = example_f1(challenger_pred, targets)
    outcome = PairedOutcome(
        champion_accuracy=float(champ.mean()),
        champion_only=int((champ > chall + 1e-12).sum()),
        challenger_only=int((chall > champ + 1e-12).sum()),
    )
    return outcome, float(chall.mean())


def mcnemar_worse_p(champion_only: int, challenger_only: int) -> float:
    """One-sided exact McNemar: P(the champion wins this many discordant pairs | equal accuracy)."""
    discordant = champion_only + challenger_only
    if discordant == 0:
        return 1.0
    return float(binomtest(champion_only, discordant, 0.5, alternative="greater").pvalue)


def promotion_decision(
    *,
    has_champion: bool,
    holdout_count: int,
    holdout_classes: int,
    challenger_accuracy: float | None,
    champion_accuracy: float | None,
    challenger_calibration_accuracy: float | None,
    champion_calibration_accuracy: float | None,
    tolerance: float,
    champion_only_correct: int | None = None,
    challenger_only_correct: int | None = None,
    measure: str = "accuracy",
) -> tuple[bool, str]:
    """The promotion gate: (promote?, the reason in words).

    ``champion_only_correct`` / ``challenger_only_correct`` count the holdout documents that only
    one of the two models gets right; without them a drop beyond the tolerance rejects outright.
    ``measure`` names the compared figure in the reason ("example F1" for multi-label, whose pairs
    come from ``multilabel_paired_outcome``).
    """
    if not has_champion:
        return True, "first model: there is no champion to compare with"
    if holdout_count >= MIN_HOLDOUT_LABELS and holdout_classes >= 2:
        assert challenger_accuracy is not None and champion_accuracy is not None
        head = (
            f"holdout of {holdout_count} labeled documents: challenger {measure} {challenger_accuracy:.3f}, "
            f"champion {champion_accuracy:.3f} on the same documents, tolerance {tolerance:.3f}: "
        )
        if challenger_accuracy >= champion_accuracy - tolerance:
            return True, head + "promoted"
        if champion_only_correct is None or challenger_only_correct is None:
            return False, head + "rejected (worse than the champion by more than the tolerance)"
        p_value = mcnemar_worse_p(champion_only_correct, challenger_only_correct)
        if measure == "accuracy":
            evidence = (
                f"champion alone right on {champion_only_correct}, challenger alone on {challenger_only_correct}, "
                f"McNemar p={p_value:.3f}"
            )
        else:  # a graded per-item outcome: the same binomial, over the items one model scores better on
            evidence = (
                f"champion better on {champion_only_correct} items, challenger on {challenger_only_correct}, "
                f"sign test p={p_value:.3f}"
            )
        if p_value < PROMOTION_ALPHA:
            return False, head + f"rejected: significantly worse ({evidence})"
        return False, head + (
            f"rejected: worse by more than the tolerance, though the holdout cannot tell the two apart "
            f"({evidence}); label more holdout documents or widen the tolerance"
        )
    prefix = (
        f"holdout too small to judge ({holdout_count} labeled, {holdout_classes} classes; "
        f"needs {MIN_HOLDOUT_LABELS} covering 2 classes): "
    )
    if challenger_calibration_accuracy is None or champion_calibration_accuracy is None:
        return (
            True,
            prefix + "no calibration-split figure for both models; the newer model has more labels: promoted",
        )
    ok = challenger_calibration_accuracy >= champion_calibration_accuracy - tolerance
    return ok, prefix + (
        f"calibration-split {measure} {challenger_calibration_accuracy:.3f} vs the champion's "
        f"{champion_calibration_accuracy:.3f}, tolerance {tolerance:.3f}: " + ("promoted" if ok else "rejected")
    )
