"""Open review items after a label-set change: judged again by the rule that opened them.

A disagreement item is opened when a document's complete labels reach no consensus
(``review.document_completed``). A label-set change alters those labels: rename and merge move them
to the new name (``labelset._move_labels``; an item's labels are the annotations themselves, so an
open item shows the new names at once), retire and split take a label out of the vote. Inside the
change's transaction each open disagreement item of the project is judged again, with the same
consensus rule, over the answers that still count (answers in the new set):

- **dissolved**: at least two answers still count and they reach consensus. A merge of the labels the
  annotators disagreed on is the usual case; a retire of the label a minority chose, while at least two
  agreeing answers remain, is another. The item is closed (``state=closed``, nobody decided it) with
  its reason in ``closed_reason`` and an audit event ``review.closed`` by the manager who made the
  change; the document's final label is then its consensus, as for any document whose answers agree.
- **still open**: anything else, including a change that leaves a single counting answer (a retire or
  split of one of two disagreeing labels): the other annotator's answer was voided, not won over, so
  nobody agreed with the remaining one and a reviewer decides.

A rename never dissolves a disagreement (it maps labels one to one). Items opened for another reason
(noise, audit, flag) question one label's quality, not a disagreement: they stay open, renamed.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.utils import timezone

from labeling.models import Annotation, AuditAction, Project, ReviewItem, ReviewReason, ReviewState
from labeling.services.audit import audit_record


def review_items_relabeled(*, project: Project, operation: str, version: int, by: Any) -> int:
    """Close the open disagreement items that label-set ``version`` dissolved; returns how many.

    Runs inside the label-set change's transaction, after the new set is stored on ``project``.
    """
    items = list(
        ReviewItem.objects.select_for_update()
        .filter(project=project, state=ReviewState.OPEN, reason=ReviewReason.DISAGREEMENT)
        .order_by("id")
    )
    if not items:
        return 0
    answers: dict[int, list[str]] = defaultdict(list)
    rows = Annotation.objects.filter(document_id__in=[item.document_id for item in items]).order_by("id")
    for document_id, label in rows.values_list("document_id", "label"):
        answers[document_id].append(label)
    space = project.label_space
    now = timezone.now()
    closed: list[tuple[ReviewItem, str, float, int]] = []
    for item in items:
        given = answers[item.document_id]
        consensus = space.consensus(given, project.min_agreement)
        counting = consensus.votes  # answers still in the set
        if counting < 2 or consensus.label is None:
            continue
        item.state, item.decided_at, item.reviewer, item.leased_until = ReviewState.CLOSED, now, None, None
        item.closed_reason = (
            f"label set version {version} ({operation}): the {counting} answers that count now agree on "
            f"{consensus.label!r} ({consensus.agreement:.0%}); no review needed"
        )
        closed.append((item, consensus.label, consensus.agreement, counting))
    ReviewItem.objects.bulk_update(
        [item for item, *_ in closed], ["state", "decided_at", "reviewer", "leased_until", "closed_reason"]
    )
    for item, label, agreement, counting in closed:
        audit_record(
            actor=by,
            action=AuditAction.REVIEW_CLOSED,
            project=project,
            target=item,
            data={
                "document": item.document_id,
                "operation": operation,
                "label_set_version": version,
                "label": label,
                "agreement": round(agreement, 4),
                "answers": counting,
                "reason": item.closed_reason,
            },
        )
    return len(closed)
