"""Leases: hand the next document to an annotator, renew, skip, release, expire.

Two annotators never hold the same document: the candidate row is locked with
``FOR UPDATE SKIP LOCKED`` and the lease is inserted with ``ON CONFLICT DO NOTHING`` against the
``one_active_assignment_per_document`` constraint, so a lease committed by someone else after our
candidate query ran makes the insert a no-op and the next candidate is tried.
"""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from labeling import roles
from labeling.models import Assignment, AssignmentState, Document, ModelVersion, Project, Split
from labeling.selectors import queue as q
from labeling.selectors.models import champion_ref


class LeaseExpiredError(Exception):
    """The lease ran out (or was given up); the document may already be someone else's."""


class AssignmentClosedError(Exception):
    """The assignment is done, skipped or released: nothing more can happen to it."""


def assignments_expire(*, project: Project) -> int:
    """Return lapsed leases of ``project`` to the pool; runs inside every lease transaction."""
    now = timezone.now()
    return Assignment.objects.filter(
        document__project=project, state=AssignmentState.ACTIVE, leased_until__lte=now
    ).update(state=AssignmentState.EXPIRED, finished_at=now)


def _own_leases(project: Project, annotator: AbstractBaseUser) -> tuple[int, int | None]:
    """(leases this annotator has had in ``project``, the id of the active one or None): one query."""
    found = Assignment.objects.filter(annotator=annotator, document__project=project).aggregate(
        n=Count("id"), active=Max("id", filter=Q(state=AssignmentState.ACTIVE))
    )
    return found["n"], found["active"]


def _serve_holdout(
    project: Project, annotator: AbstractBaseUser, lease_count: int
) -> tuple[bool, random.Random]:
    """Seeded per (project, annotator, lease number): deterministic, and blind to the model."""
    rng = random.Random(f"{project.seed}:{annotator.pk}:{lease_count}")
    return rng.random() < project.holdout_interleave, rng


def _insert_lease(
    document: Document, annotator: AbstractBaseUser, reason: dict[str, Any], minutes: int
) -> Assignment | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING id: one statement, no savepoint.

    ``one_active_assignment_per_document`` decides a race: the loser inserts nothing and gets None.
    """
    now = timezone.now()
    lease = Assignment(
        document=document,
        annotator=annotator,
        state=AssignmentState.ACTIVE,
        leased_until=now + timedelta(minutes=minutes),
        reason=reason,
        created_at=now,
    )
    columns = ("document_id", "annotator_id", "state", "leased_until", "reason", "created_at")
    values = [
        Assignment._meta.get_field(name).get_db_prep_save(getattr(lease, name), connection) for name in columns
    ]
    table = connection.ops.quote_name(Assignment._meta.db_table)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        "ON CONFLICT DO NOTHING RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        row = cursor.fetchone()
    if row is None:
        return None
    lease.pk = row[0]
    return lease


def _try_lease(
    project: Project, annotator: AbstractBaseUser, document_ids: list[int], reason: dict[str, Any]
) -> Assignment | None:
    for doc_id in document_ids:
        locked = (
            Document.objects.select_for_update(skip_locked=True).filter(pk=doc_id, is_labeled=False).first()
        )
        if locked is None:
            continue  # another annotator is leasing it right now, or it was just labeled
        lease = _insert_lease(locked, annotator, reason, project.lease_minutes)
        if lease is not None:
            return lease
        # An active lease committed after our candidate query ran: someone else holds it.
    return None


def _lease_pool(
    project: Project, annotator: AbstractBaseUser, champion: ModelVersion | None, rng: random.Random
) -> Assignment | None:
    if champion is not None:
        candidates = q.pool_candidates(champion, annotator_id=annotator.pk)
        if candidates:
            hashes, points = q.leased_points(project, champion)
            ordered = q.diversify(candidates, hashes, points)
            for c in ordered:
                reason = {
                    "strategy": project.acquisition_strategy,
                    "score": c.score,
                    "holdout": False,
                    "model_version": champion.version,
                    "rank": candidates.index(c) + 1,
                }
                lease = _try_lease(project, annotator, [c.document_id], reason)
                if lease is not None:
                    return lease
    # Cold start (no champion yet, or documents it has not scored): a seeded random order.
    ids = q.random_unleased(project, split=Split.POOL, annotator_id=annotator.pk, rng=rng)
    reason = {
        "strategy": "cold_start_random",
        "score": None,
        "holdout": False,
        "model_version": champion.version if champion else None,
    }
    return _try_lease(project, annotator, ids, reason)


def _lease_holdout(project: Project, annotator: AbstractBaseUser, rng: random.Random) -> Assignment | None:
    ids = q.random_unleased(project, split=Split.HOLDOUT, annotator_id=annotator.pk, rng=rng)
    reason = {"strategy": "holdout_random", "score": None, "holdout": True, "model_version": None}
    return _try_lease(project, annotator, ids, reason)


def assignment_next(*, project: Project, annotator: AbstractBaseUser) -> Assignment | None:
    """The caller's active lease, or a new one on the best free document; None when nothing is left.

    No retry loop: a lost race is an insert that does nothing (``_insert_lease``), never an error,
    and the next candidate is tried in the same transaction.
    """
    with transaction.atomic():
        assignments_expire(project=project)
        lease_count, current_id = _own_leases(project, annotator)
        if current_id is not None:
            return Assignment.objects.select_related("document").get(pk=current_id)
        holdout, rng = _serve_holdout(project, annotator, lease_count)
        champion = champion_ref(project_id=project.pk)
        if holdout:
            return _lease_holdout(project, annotator, rng) or _lease_pool(project, annotator, champion, rng)
        return _lease_pool(project, annotator, champion, rng) or _lease_holdout(project, annotator, rng)


def assignment_locked_for(assignment: Assignment, user: AbstractBaseUser, *, admin_may: bool) -> Assignment:
    locked = Assignment.objects.select_for_update().select_related("document__project").get(pk=assignment.pk)
    if locked.annotator_id != user.pk and not (admin_may and roles.is_admin(user)):
        raise PermissionDenied("this assignment belongs to another annotator")
    return locked


def assignment_require_live(assignment: Assignment) -> None:
    """Raise unless ``assignment`` (locked by the caller) is an unexpired active lease."""
    if assignment.state == AssignmentState.ACTIVE and assignment.leased_until <= timezone.now():
        assignment.state = AssignmentState.EXPIRED
        assignment.finished_at = timezone.now()
        assignment.save(update_fields=["state", "finished_at"])
    if assignment.state == AssignmentState.EXPIRED:
        raise LeaseExpiredError("the lease has expired; ask the queue for the next document")
    if assignment.state != AssignmentState.ACTIVE:
        raise AssignmentClosedError(f"the assignment is already {assignment.state}")


def assignment_renew(*, assignment: Assignment, user: AbstractBaseUser) -> Assignment:
    """Extend a live lease by the project's lease time."""
    with transaction.atomic():
        locked = assignment_locked_for(assignment, user, admin_may=False)
        try:
            assignment_require_live(locked)
        except LeaseExpiredError:
            expired = True  # the EXPIRED state commits with this block; the document is free again
        else:
            expired = False
            locked.leased_until = timezone.now() + timedelta(minutes=locked.document.project.lease_minutes)
            locked.save(update_fields=["leased_until"])
    if expired:
        raise LeaseExpiredError("the lease has expired; ask the queue for the next document")
    return locked


def _finish(assignment: Assignment, user: AbstractBaseUser, state: AssignmentState) -> Assignment:
    with transaction.atomic():
        locked = assignment_locked_for(assignment, user, admin_may=state == AssignmentState.RELEASED)
        try:
            assignment_require_live(locked)
        except LeaseExpiredError:
            expired = True
        else:
            expired = False
            locked.state = state
            locked.finished_at = timezone.now()
            locked.save(update_fields=["state", "finished_at"])
    if expired:
        raise LeaseExpiredError("the lease has expired; ask the queue for the next document")
    return locked


def assignment_skip(*, assignment: Assignment, user: AbstractBaseUser) -> Assignment:
    """Give the document back; this annotator is not offered it again."""
    return _finish(assignment, user, AssignmentState.SKIPPED)


def assignment_release(*, assignment: Assignment, user: AbstractBaseUser) -> Assignment:
    """Give the document back to the pool for anyone (an admin may release any lease)."""
    return _finish(assignment, user, AssignmentState.RELEASED)
