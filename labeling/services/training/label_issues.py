"""Likely-wrong labels after a training run: rank the run's training labels with ``modelsvc.noise``.

The run's cross-fitted out-of-fold probabilities (``TrainResult.oof_probs``) score every training label
with a model that never saw it; the top ``REVIEW_SHARE`` of them, most suspect first, are recorded on the
challenger as ``metrics["label_issues"]`` (whether it is promoted or not: the labels are the project's,
not the model's), and sent to the review queue (``labeling.services.review.review_flag``, reason
``noise``) unless a reviewer already decided the document: a reviewer's verdict is final until its
labels change, so the model's disagreement with it does not re-open it round after round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from labeling.models import ModelVersion, Project, ReviewDecision, ReviewReason
from labeling.services.review import review_flag
from modelsvc.noise import REVIEW_SHARE, rank_label_issues


def label_issues_rank(
    *,
    document_ids: Sequence[int],
    labels: Sequence[str],
    label_names: Sequence[str],
    oof_probs: np.ndarray,
    share: float = REVIEW_SHARE,
) -> dict[str, Any]:
    """JSON-ready ranking of the ``share`` most suspect labels; ``oof_probs`` (N, C) in document order."""
    index = {name: i for i, name in enumerate(label_names)}
    ranking = rank_label_issues(np.array([index[lab] for lab in labels], dtype=np.int64), oof_probs)
    top = ranking.top(share)
    return {
        "method": "confident_learning_self_confidence",
        "share": share,
        "n_ranked": len(document_ids),
        "n_issues": int(ranking.is_issue.sum()),
        "document_ids": [int(document_ids[i]) for i in top],
        "scores": [round(float(ranking.scores[i]), 6) for i in top],
    }


def label_issues_flag(*, project: Project, issues: dict[str, Any]) -> int:
    """Open a ``noise`` review item per flagged document not decided by a reviewer; returns how many opened.

    The review queue orders by score, higher first, so it gets 1 - label quality.
    """
    ids, scores = issues["document_ids"], issues["scores"]
    decided = set(ReviewDecision.objects.filter(document_id__in=ids).values_list("document_id", flat=True))
    keep = [(doc_id, score) for doc_id, score in zip(ids, scores, strict=True) if doc_id not in decided]
    return review_flag(
        project=project,
        document_ids=[doc_id for doc_id, _ in keep],
        reason=ReviewReason.NOISE,
        scores=[1.0 - score for _, score in keep],
    )


def label_issues_for_review(*, model_version: ModelVersion) -> list[tuple[int, float]]:
    """(document id, score) of the labels a run flagged, most suspect first; [] when none were ranked."""
    issues = (model_version.metrics or {}).get("label_issues") or {}
    return list(zip(issues.get("document_ids", []), issues.get("scores", []), strict=True))
