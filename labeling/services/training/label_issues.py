"""Likely-wrong labels after a training run: rank the run's training labels with ``modelsvc.noise``.

The run's cross-fitted out-of-fold probabilities (``TrainResult.oof_probs``) score every training label
with a model that never saw it; the labels under suspicion after the run, most suspect first, are its
top ``Project.noise_review_share`` (default 10 %) of those cleanlab counts as issues. They are recorded
on the challenger as ``metrics["label_issues"]`` (whether it is promoted or not: the labels are the
project's, not the model's) and wait in the review queue (``labeling.services.review.review_flag``,
reason ``noise``).

Every run ranks them again, the flags still waiting included: a waiting flag the newest model no
longer doubts is released (its item closes as ``released``, audited), so the flagged set follows the
newest and best model instead of freezing on the first small one, and stays within the share. A flag a
reviewer holds on lease stays. Documents a reviewer has decided are ranked but never flagged: a
reviewer's verdict is final, and the model keeps disagreeing with the hard ones it fixed, which would
otherwise take the top places round after round (the replay measured exactly that).
Where the project holds flagged labels back from training (``Project.noise_hold_flagged``, off by
default; ``labeling.selectors.consensus``) the waiting ones did not train, have no out-of-fold
probabilities and are not ranked again: they keep their flags and use up the share first.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from labeling.models import AuditAction, ModelVersion, Project, ReviewDecision, ReviewItem, ReviewReason, ReviewState
from labeling.services.audit import audit_record
from labeling.services.review import review_flag
from modelsvc.noise import flag_select, rank_label_issues


def label_issues_rank(
    *,
    document_ids: Sequence[int],
    labels: Sequence[str],
    label_names: Sequence[str],
    oof_probs: np.ndarray,
    share: float,
    decided: Collection[int] = (),
    waiting: Collection[int] = (),
    kept: Collection[int] = (),
    pending: int = 0,
) -> dict[str, Any]:
    """JSON-ready labels under suspicion after this run, most suspect first, and the flags it releases.

    ``waiting``: documents among these N whose flag still waits for a reviewer; ``kept``: those of them a
    reviewer holds on lease (they stay, whatever the rank); ``pending``: waiting flags outside these N
    (held back from training, so not ranked again). At most ``share`` of all the labels are under
    suspicion at once, ``pending`` and ``kept`` first: without the cap an unreviewed backlog would grow
    round by round. Only labels cleanlab itself counts as issues are flagged (where it can give a
    verdict): a clean project's labels are mostly right, so a fixed share would spend review on good
    labels. A waiting flag outside the new set is released.

    oof_probs: (N, C) out-of-fold probabilities in the order of ``document_ids`` and ``labels``.
    """
    index = {name: i for i, name in enumerate(label_names)}
    ranking = rank_label_issues(np.array([index[lab] for lab in labels], dtype=np.int64), oof_probs)
    ids = np.array([int(d) for d in document_ids], dtype=np.int64)
    skip, waits = set(decided), {int(d) for d in waiting}
    stays = {int(d) for d in kept} & waits
    budget = max(0, math.ceil(share * (len(ids) + pending)) - pending - len(stays))
    suspect = ranking.is_issue if ranking.verdict else np.ones(len(ids), dtype=bool)
    free = np.array([int(d) not in skip and int(d) not in stays for d in ids], dtype=bool)
    chosen = set(flag_select(ranking.order, suspect & free, budget).tolist())
    chosen |= {i for i, d in enumerate(ids) if int(d) in stays}
    top = [int(i) for i in ranking.order if int(i) in chosen]
    flagged = {int(ids[i]) for i in top}
    return {
        "method": "confident_learning_self_confidence",
        "share": share,
        "n_ranked": len(ids),
        "n_pending": pending,
        "n_decided": sum(1 for doc_id in ids if int(doc_id) in skip),
        "n_issues": int(ranking.is_issue.sum()),
        "document_ids": [int(ids[i]) for i in top],
        "scores": [round(float(ranking.scores[i]), 6) for i in top],
        "released": sorted(waits - flagged),
    }


def reviewer_decided(*, project: Project) -> set[int]:
    """Documents of ``project`` with a reviewer's decision."""
    return set(ReviewDecision.objects.filter(project=project).values_list("document_id", flat=True))


def noise_flags_leased(*, project: Project) -> set[int]:
    """Documents of ``project`` whose open ``noise`` flag a reviewer holds on lease right now."""
    items = ReviewItem.objects.filter(
        project=project, reason=ReviewReason.NOISE, state=ReviewState.OPEN, leased_until__gt=timezone.now()
    )
    return set(items.values_list("document_id", flat=True))


@transaction.atomic
def label_issues_flag(*, project: Project, issues: dict[str, Any], model_version: ModelVersion | None = None) -> int:
    """Apply a run's ranking to the review queue; returns how many ``noise`` items it opened.

    Opens an item per newly suspect document, gives the waiting ones the newest score (the review queue
    orders by score, higher first, so it gets 1 - label quality), and releases the waiting flags the run
    no longer doubts (``issues["released"]``) unless a reviewer leased one meanwhile; the documents
    released are written back to ``issues["released"]`` and named in one ``review.released`` audit event.
    """
    scores = {int(d): 1.0 - float(s) for d, s in zip(issues["document_ids"], issues["scores"], strict=True)}
    opened = review_flag(
        project=project, document_ids=list(scores), reason=ReviewReason.NOISE, scores=list(scores.values())
    )
    waiting = list(
        ReviewItem.objects.filter(
            project=project, reason=ReviewReason.NOISE, state=ReviewState.OPEN, document_id__in=list(scores)
        ).only("pk", "document_id", "score")
    )
    for item in waiting:
        item.score = scores[item.document_id]
    ReviewItem.objects.bulk_update(waiting, ["score"])
    released = _noise_flags_release(project=project, document_ids=issues.get("released", []))
    issues["released"] = released
    if released:
        audit_record(
            actor=None,
            action=AuditAction.REVIEW_RELEASED,
            project=project,
            target=model_version,
            data={"documents": released, "reason": "the newest model no longer ranks them among the suspect labels"},
        )
    return opened


def _noise_flags_release(*, project: Project, document_ids: Sequence[int]) -> list[int]:
    """Close the open, unleased ``noise`` items of ``document_ids`` as released; the documents released."""
    if not document_ids:
        return []
    now = timezone.now()
    items = (
        ReviewItem.objects.select_for_update(skip_locked=True)
        .filter(project=project, reason=ReviewReason.NOISE, state=ReviewState.OPEN, document_id__in=list(document_ids))
        .filter(Q(leased_until__isnull=True) | Q(leased_until__lte=now))
    )
    rows = list(items.values_list("pk", "document_id"))
    ReviewItem.objects.filter(pk__in=[pk for pk, _ in rows]).update(
        state=ReviewState.RELEASED, decided_at=now, reviewer=None, leased_until=None
    )
    return sorted(doc_id for _, doc_id in rows)


def label_issues_for_review(*, model_version: ModelVersion) -> list[tuple[int, float]]:
    """(document id, score) of the labels a run left under suspicion, most suspect first; [] when none."""
    issues = (model_version.metrics or {}).get("label_issues") or {}
    return list(zip(issues.get("document_ids", []), issues.get("scores", []), strict=True))
