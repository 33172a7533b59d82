"""Review and adjudication: send documents to review, lease them to reviewers, record decisions.

A document goes to review when its complete labels have no consensus (``disagreement``), when the
label-noise ranking flags it (``noise``, through ``review_flag``), or by a seeded random audit of
single-labeled documents (``audit``, the project's ``review_audit_share``). One open item per
document (a database constraint). A reviewer leases an item like an annotator leases a document
(``FOR UPDATE SKIP LOCKED``: two reviewers never hold one item) and decides it: accept one of the
given labels or override with another. The decision is an append-only record beside the labels,
which stay as their annotators gave them; the latest decision is the document's final label.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Case, F, IntegerField, Q, Value, When
from django.utils import timezone

from labeling.models import (
    Annotation,
    AuditAction,
    Document,
    Project,
    ReviewAction,
    ReviewComment,
    ReviewDecision,
    ReviewItem,
    ReviewReason,
    ReviewState,
)
from labeling.selectors.consensus import REVIEWER, final_labels
from labeling.services.answers import UNSET, answer_validate
from labeling.services.audit import audit_record
from labeling.services.dispatch import TaskName, enqueue
from labeling.services.errors import ServiceConflict
from labeling.services.events import Event, publish
from labeling.services.labelset import label_set_shared
from labeling.services.sampling import seeded_draw

MAX_COMMENT_CHARS = 10_000
# The order reviewers meet open items in: disagreements block training, so they come first.
_PRIORITY = Case(
    When(reason=ReviewReason.DISAGREEMENT, then=Value(0)),
    When(reason=ReviewReason.NOISE, then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)


class ReviewClosedError(ServiceConflict):
    """The item is not open for review (already decided)."""

    code = "not_in_review"


class ReviewLeasedError(ServiceConflict):
    """Another reviewer holds this item right now."""

    code = "review_leased"


def _audit_draw(*, seed: int, document_id: int, share: float) -> bool:
    return seeded_draw(f"{seed}:audit:{document_id}", share)


def _open_items(project: Project, document_ids: list[int], reason: str, scores: list[float] | None) -> int:
    """Open an item per document that has none open; returns how many were opened."""
    already = set(
        ReviewItem.objects.filter(document_id__in=document_ids, state=ReviewState.OPEN).values_list(
            "document_id", flat=True
        )
    )
    score_of = dict(zip(document_ids, scores, strict=True)) if scores is not None else {}
    new = [
        ReviewItem(project=project, document_id=doc_id, reason=reason, score=score_of.get(doc_id))
        for doc_id in dict.fromkeys(document_ids)
        if doc_id not in already
    ]
    # A concurrent flag of the same document loses quietly to one_open_review_per_document.
    created = ReviewItem.objects.bulk_create(new, ignore_conflicts=True)
    return len(created)


def document_completed(*, project: Project, document: Document, labels: list[str]) -> str | None:
    """A document just got its last label (inside the labeling transaction): send it to review if due.

    ``labels``: its labels in the order given (the caller has read them). Returns the reason it went to
    review, or None. One statement at most: this runs while the labeling transaction holds the
    document's row lock, so the insert relies on ``one_open_review_per_document`` (a document already
    open stays as it is) instead of reading first.
    """
    reason = None
    if len(labels) >= 2 and project.label_space.consensus(labels, project.min_agreement).label is None:
        reason = ReviewReason.DISAGREEMENT
    elif len(labels) == 1 and _audit_draw(seed=project.seed, document_id=document.pk, share=project.review_audit_share):
        reason = ReviewReason.AUDIT
    if reason is None:
        return None
    ReviewItem.objects.bulk_create(
        [ReviewItem(project=project, document_id=document.pk, reason=reason)], ignore_conflicts=True
    )
    return reason


def labels_changed(*, project: Project, document: Document) -> None:
    """An annotator changed a label of a complete document: a new disagreement goes to review."""
    if document.is_labeled and document.labels_required >= 2:
        space = project.label_space
        given = [a for a in Annotation.objects.filter(document=document).values_list("label", flat=True)
                 if space.is_current(a)]
        if space.consensus(given, project.min_agreement).label is None:
            _open_items(project, [document.pk], ReviewReason.DISAGREEMENT, None)


@transaction.atomic
def review_flag(
    *, project: Project, document_ids: list[int], reason: str, scores: list[float] | None = None
) -> int:
    """Send labeled documents of ``project`` to review for ``reason``; returns how many items opened.

    ``scores`` (one per document, higher = more urgent) orders the reviewers' queue within a
    reason. Documents already open for review, or without a label, or of another project, are left
    alone. The label-noise loop calls it with ``reason="noise"``.
    """
    if reason not in ReviewReason.values:
        raise ValidationError({"reason": f"must be one of {ReviewReason.values}"})
    if scores is not None and len(scores) != len(document_ids):
        raise ValidationError({"scores": f"needs one score per document ({len(document_ids)}), got {len(scores)}"})
    labeled = set(
        Annotation.objects.filter(document_id__in=document_ids, project=project).values_list(
            "document_id", flat=True
        )
    )
    keep = [i for i, doc_id in enumerate(document_ids) if doc_id in labeled]
    ids = [document_ids[i] for i in keep]
    return _open_items(project, ids, reason, [float(scores[i]) for i in keep] if scores is not None else None)


def review_lease_next(
    *, project: Project, reviewer: AbstractBaseUser, minutes: int | None = None, exclude: Sequence[int] = ()
) -> ReviewItem | None:
    """The reviewer's live review lease, or the next open item nobody holds; None when none is left.

    A reviewer is not offered a document they labeled themselves, nor the items in ``exclude`` (the
    ones the review page skipped: a released item would otherwise come straight back, first in order).
    """
    now = timezone.now()
    with transaction.atomic():
        held = ReviewItem.objects.filter(
            project=project, state=ReviewState.OPEN, reviewer_id=reviewer.pk, leased_until__gt=now
        ).first()
        if held is not None:
            return held
        free = (
            ReviewItem.objects.filter(project=project, state=ReviewState.OPEN)
            .filter(Q(reviewer__isnull=True) | Q(leased_until__lte=now))
            .exclude(document__annotations__annotator_id=reviewer.pk)
            .exclude(pk__in=list(exclude))
            .annotate(priority=_PRIORITY)
            .order_by("priority", F("score").desc(nulls_last=True), "id")
            .select_for_update(skip_locked=True, of=("self",))
            .first()
        )
        if free is None:
            return None
        free.reviewer_id = reviewer.pk
        free.leased_until = now + timedelta(minutes=minutes or project.lease_minutes)
        free.save(update_fields=["reviewer", "leased_until"])
        return free


def _locked_open(item: ReviewItem, reviewer: AbstractBaseUser) -> ReviewItem:
    locked = ReviewItem.objects.select_for_update().select_related("project").get(pk=item.pk)
    if locked.state != ReviewState.OPEN:
        raise ReviewClosedError(f"review item {locked.pk} is not in review (it is {locked.state})")
    if locked.reviewer_id not in (None, reviewer.pk) and locked.leased_until and locked.leased_until > timezone.now():
        raise ReviewLeasedError(f"review item {locked.pk} is held by another reviewer until {locked.leased_until}")
    return locked


def review_decide(
    *,
    item: ReviewItem,
    reviewer: AbstractBaseUser,
    label: object = UNSET,
    labels: object = UNSET,
    comment: str = "",
) -> ReviewDecision:
    """Decide an open item: the answer becomes the document's final label (accept or override).

    ``label`` (one name) decides a single-label project's item, ``labels`` (a set) a multi-label one's;
    accepting is giving an answer one of the annotators gave (a set: the same set).
    """
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise ValidationError({"comment": f"must be text of at most {MAX_COMMENT_CHARS:,} characters"})
    with transaction.atomic():
        label_set, version = label_set_shared(project_id=item.project_id)  # a label-set change waits for it
        locked = _locked_open(item, reviewer)
        project = locked.project
        project.labels, project.label_set_version = label_set, version
        label = answer_validate(project, label=label, labels=labels)
        before = final_labels(project=project, document_ids=[locked.document_id]).get(locked.document_id)
        given = {answer for _, answer in before.labels} if before else set()
        replaced_by = ""
        if before is not None and before.label is not None:
            replaced_by = f"reviewer:{before.reviewer}" if before.decided_by == REVIEWER else before.decided_by
        now = timezone.now()
        decision = ReviewDecision.objects.create(
            item=locked,
            project=project,
            document_id=locked.document_id,
            reviewer=reviewer,
            action=ReviewAction.ACCEPT if label in given else ReviewAction.OVERRIDE,
            label=label,
            replaced_label=(before.label or "") if before else "",
            replaced_by=replaced_by,
            comment=comment,
            created_at=now,
        )
        locked.state = ReviewState.DECIDED
        locked.decided_at = now
        locked.reviewer_id = reviewer.pk
        locked.save(update_fields=["state", "decided_at", "reviewer"])
        audit_record(
            actor=reviewer, action=AuditAction.REVIEW_DECIDED, project=project, target=locked,
            data={"document": locked.document_id, "decision": decision.action, "label": label,
                  "replaced_label": decision.replaced_label, "replaced_by": replaced_by},
        )
        # A decision is a new training label: the retrain threshold counts it (training/triggers.py).
        enqueue(TaskName.CHECK_RETRAIN, args=(project.pk,), countdown=5, coalesce_s=4)
        publish(Event.REVIEW_DECIDED, {
            "project_id": project.pk, "review_item_id": locked.pk, "decision_id": decision.pk,
            "document_id": locked.document_id, "label": label, "action": decision.action,
            "replaced_label": decision.replaced_label, "reviewer_id": reviewer.pk,
        }, project=project)
    return decision


def review_comment(*, item: ReviewItem, author: AbstractBaseUser, text: object) -> ReviewComment:
    """A note on an item, open or decided; it decides nothing."""
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_COMMENT_CHARS:
        raise ValidationError({"text": f"must be 1-{MAX_COMMENT_CHARS:,} characters"})
    return ReviewComment.objects.create(item=item, author=author, text=text.strip())


def review_renew(*, item: ReviewItem, reviewer: AbstractBaseUser, minutes: int | None = None) -> ReviewItem:
    """Extend the caller's hold on an open item (the review page's keep-alive while it is shown).

    Only its holder renews: a hold that ran out and went to another reviewer, or that was given
    back, is a 409, and the page explains the lost hold instead of deciding on a stale screen.
    """
    with transaction.atomic():
        locked = _locked_open(item, reviewer)
        if locked.reviewer_id != reviewer.pk:
            raise ReviewLeasedError(f"review item {locked.pk} is not held by you: load the next item")
        locked.leased_until = timezone.now() + timedelta(minutes=minutes or locked.project.lease_minutes)
        locked.save(update_fields=["leased_until"])
    return locked


def review_release(*, item: ReviewItem, reviewer: AbstractBaseUser) -> ReviewItem:
    """Give an open item back to the review queue (its holder; a skip in the review page)."""
    with transaction.atomic():
        locked = _locked_open(item, reviewer)
        locked.reviewer = None
        locked.leased_until = None
        locked.save(update_fields=["reviewer", "leased_until"])
    return locked
