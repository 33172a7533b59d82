"""Likely-wrong labels after a training run: rank the run's training labels with ``modelsvc.noise``.

The run's cross-fitted out-of-fold probabilities (``TrainResult.oof_probs``) score every training label
with a model that never saw it; the top ``Project.noise_review_share`` of them (default 10 %), most
suspect first, are recorded on the challenger as ``metrics["label_issues"]`` (whether it is promoted or
not: the labels are the project's, not the model's), and sent to the review queue
(``labeling.services.review.review_flag``, reason ``noise``). Documents a reviewer has decided are
ranked but never flagged: a reviewer's verdict is final, and the model keeps disagreeing with the hard
ones it fixed, which would otherwise take the top places round after round and leave the review budget
nothing new (the replay measured exactly that).
A flagged label keeps training until its review is decided, or stops training until then where the
project holds flagged labels back (``Project.noise_hold_flagged``, off by default;
``labeling.selectors.consensus``); either way it counts against the share while it waits.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from labeling.models import ModelVersion, Project, ReviewDecision, ReviewReason
from labeling.services.review import review_flag
from modelsvc.noise import rank_label_issues


def label_issues_rank(
    *,
    document_ids: Sequence[int],
    labels: Sequence[str],
    label_names: Sequence[str],
    oof_probs: np.ndarray,
    share: float,
    decided: Collection[int] = (),
    pending: int = 0,
) -> dict[str, Any]:
    """JSON-ready list of the most suspect labels, skipping ``decided`` documents.

    At most ``share`` of all the labels are under suspicion at once: ``pending`` earlier flags still
    wait for a reviewer (the caller leaves them out of these N, whether they trained or were held
    back: they are not flagged twice), and they use up the budget
    first. Without the cap every run would flag a fresh share of what is left, and an unreviewed
    backlog would eat the training set round by round. Only labels cleanlab itself counts as issues
    are flagged (where it can give a verdict): a clean project's labels are mostly right, so a fixed
    share would spend review (and, with ``noise_hold_flagged``, training labels) on good labels.

    oof_probs: (N, C) out-of-fold probabilities in the order of ``document_ids`` and ``labels``.
    """
    index = {name: i for i, name in enumerate(label_names)}
    ranking = rank_label_issues(np.array([index[lab] for lab in labels], dtype=np.int64), oof_probs)
    skip = set(decided)
    budget = max(0, math.ceil(share * (len(document_ids) + pending)) - pending)
    suspect = ranking.is_issue if ranking.verdict else np.ones(len(document_ids), dtype=bool)
    top = [i for i in ranking.order if int(document_ids[i]) not in skip and suspect[i]][:budget]
    return {
        "method": "confident_learning_self_confidence",
        "share": share,
        "n_ranked": len(document_ids),
        "n_pending": pending,
        "n_decided": sum(1 for doc_id in document_ids if int(doc_id) in skip),
        "n_issues": int(ranking.is_issue.sum()),
        "document_ids": [int(document_ids[i]) for i in top],
        "scores": [round(float(ranking.scores[i]), 6) for i in top],
    }


def reviewer_decided(*, project: Project) -> set[int]:
    """Documents of ``project`` with a reviewer's decision."""
    return set(ReviewDecision.objects.filter(project=project).values_list("document_id", flat=True))


def label_issues_flag(*, project: Project, issues: dict[str, Any]) -> int:
    """Open a ``noise`` review item per flagged document (none open yet); returns how many opened.

    The review queue orders by score, higher first, so it gets 1 - label quality.
    """
    return review_flag(
        project=project,
        document_ids=list(issues["document_ids"]),
        reason=ReviewReason.NOISE,
        scores=[1.0 - score for score in issues["scores"]],
    )


def label_issues_for_review(*, model_version: ModelVersion) -> list[tuple[int, float]]:
    """(document id, score) of the labels a run flagged, most suspect first; [] when none were ranked."""
    issues = (model_version.metrics or {}).get("label_issues") or {}
    return list(zip(issues.get("document_ids", []), issues.get("scores", []), strict=True))
