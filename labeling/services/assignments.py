"""Leases: hand the next document to an annotator, renew, skip, release, expire.

A document has ``labels_required`` places (1 without overlap); each live or labeled lease holds one
(``Assignment.slot``). The candidate row is locked with ``FOR UPDATE SKIP LOCKED`` and the lease is
inserted on the lowest free place with ``ON CONFLICT DO NOTHING`` against the
``one_live_assignment_per_document_slot`` constraint, so a lease committed by someone else after our
candidate query ran makes the insert a no-op and the next candidate is tried: a document is never
served to more annotators than it needs, and never twice to one annotator (the queue leaves out
documents the caller holds, labeled or skipped; ``one_active_assignment_per_document_annotator``
covers two concurrent requests of one caller).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone

from labeling import roles
from labeling.models import MAX_OVERLAP, Assignment, AssignmentState, Document, Prediction, Project, Split
from labeling.selectors import queue as q
from modelsvc.acquisition import selection_probability, strategy_get


class LeaseExpiredError(Exception):
    """The lease ran out (or was given up); the document may already be someone else's."""


class AssignmentClosedError(Exception):
    """The assignment is done, skipped or released: nothing more can happen to it."""


@dataclass(frozen=True)
class Lease:
    """A lease handed out by ``lease_next``, with what the queue response shows beside it."""

    assignment: Assignment  # its ``document`` is loaded
    prediction: Prediction | None  # the champion's prediction the pool item was ranked by; None otherwise


def _expire_sql(project: Project) -> tuple[str, list[Any]]:
    now = _db_now()
    sql = (
        f"UPDATE {q.ASSIGNMENT} SET state = %s, finished_at = %s"
        " WHERE state = %s AND leased_until <= %s AND project_id = %s"
    )
    return sql, [AssignmentState.EXPIRED.value, now, AssignmentState.ACTIVE.value, now, project.pk]


def assignments_expire(*, project: Project) -> int:
    """Return lapsed leases of ``project`` to the pool (every lease transaction does it too, in
    ``_lease_transaction_begin``).

    One raw statement: the ``assignment_state_lease`` index finds the lapsed active rows.
    """
    sql, params = _expire_sql(project)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return max(cursor.rowcount, 0)


#: Advisory-lock namespace for leasing, keyed by annotator (see labeling/services/modeling.py for the others).
LOCK_LEASING = 7303


def _lease_transaction_begin(project: Project, annotator: AbstractBaseUser) -> None:
    """One statement that sets up a lease transaction and expires the project's lapsed leases.

    - Commit without waiting for the WAL flush (``synchronous_commit`` off, this transaction only). A
      lease is a soft reservation that lapses by itself: if the database crashed in the ~0.6 s before
      the write-ahead log reached the disk, the lease (and the expiries) would be gone and the
      document simply free again, never inconsistent. Labels are committed with the full flush. The
      flush was the largest single wait of ``queue/next`` on the benchmark machine.
    - One lease transaction at a time per annotator (an advisory lock released at commit). Without
      it, parallel ``queue/next`` calls each see no active lease and each insert one, so a client
      could hoard the queue; serialised, the second call finds the first's lease and returns it.
    - No JIT (``jit`` off, this transaction only): a lease's statements read a few hundred rows, and
      a plan the planner overestimates must not pay ~1 s of compilation per lease. There is no
      ``enable_sort`` hint any more: it was the workaround for statistics from before a large first
      scoring (the ranking read fell off ``prediction_queue_open`` at 1,000,000 documents); a scoring
      pass now ANALYZEs the predictions table where it stops and where it ends
      (``labeling.services.scoring``), and the hint itself made overlap 2 slow: with sorting
      penalised the free-places plan of 20 paced annotators took p95 886-1,639 ms at 100,000
      documents, against 32 ms without it (docs/BENCHMARKS.md, "After the merge").
    - Lapsed leases of the project go back to the pool (``assignments_expire``'s UPDATE). The
      settings and the lock are a one-row CTE that the UPDATE's condition reads once, before its
      scan, so the lock is held before any lapsed row is locked: a second call of the same annotator
      waits on the lock holding nothing. The next statement (the context) takes a new snapshot, so
      it sees the expiries and whatever the annotator's previous lease transaction committed. One
      round trip, not two: under load each round trip waits for the database process to get a CPU.
      SQLite (no advisory locks, one writer at a time) runs the UPDATE alone.
    """
    sql, params = _expire_sql(project)
    if connection.vendor == "postgresql":
        sql = (
            "WITH setup AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true),"
            " set_config('jit', 'off', true),"
            f" pg_advisory_xact_lock(%s, %s)) {sql}"
            " AND EXISTS (SELECT 1 FROM setup)"
        )
        params = [LOCK_LEASING, annotator.pk, *params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def _db_now() -> Any:
    return connection.ops.adapt_datetimefield_value(timezone.now())


def _serve_holdout(project: Project, annotator: AbstractBaseUser, lease_count: int) -> tuple[bool, random.Random]:
    """Seeded per (project, annotator, lease number): deterministic, and blind to the model."""
    rng = random.Random(f"{project.seed}:{annotator.pk}:{lease_count}")
    return rng.random() < project.holdout_interleave, rng


def _insert_lease(
    document: Document,
    annotator: AbstractBaseUser,
    reason: dict[str, Any],
    minutes: int,
    *,
    selection: tuple[float, int] | None = None,
) -> Assignment | None:
    """Lock the document row and insert the lease on its lowest free place, in one statement.

    None when no place is free. The row lock (``FOR UPDATE SKIP LOCKED`` where the database has it)
    keeps a document being labeled right now out; ``INSERT ... ON CONFLICT DO NOTHING`` against
    ``one_live_assignment_per_document_slot`` decides a race with another lease: the loser inserts
    nothing. No savepoint, no error path. ``selection``: (probability, pool size) of a stochastic draw.
    """
    now = timezone.now()
    probability, pool_size = selection if selection is not None else (None, None)
    lease = Assignment(
        document=document,
        project_id=document.project_id,
        annotator=annotator,
        state=AssignmentState.ACTIVE,
        leased_until=now + timedelta(minutes=minutes),
        reason=reason,
        selection_probability=probability,
        selection_pool_size=pool_size,
        created_at=now,
    )
    columns = (
        "project_id", "annotator_id", "state", "leased_until", "reason",
        "selection_probability", "selection_pool_size", "created_at",
    )
    values = [Assignment._meta.get_field(name).get_db_prep_save(getattr(lease, name), connection) for name in columns]
    lock = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
    places = " UNION ALL ".join(f"SELECT {n} AS n" for n in range(MAX_OVERLAP))
    held = ", ".join(["%s"] * 2)
    sql = (
        f"WITH free AS (SELECT id, labels_required FROM {q.DOC} WHERE id = %s AND NOT is_labeled{lock}), "
        f"place AS (SELECT MIN(s.n) AS n FROM ({places}) s, free WHERE s.n < free.labels_required"
        f" AND NOT EXISTS (SELECT 1 FROM {q.ASSIGNMENT} a WHERE a.document_id = free.id AND a.slot = s.n"
        f" AND a.state IN ({held}))) "
        f"INSERT INTO {q.ASSIGNMENT} (document_id, slot, {', '.join(columns)}) "
        f"SELECT free.id, place.n, {', '.join(['%s'] * len(columns))} FROM free, place WHERE place.n IS NOT NULL "
        "ON CONFLICT DO NOTHING RETURNING id, slot"
    )
    states = [AssignmentState.ACTIVE.value, AssignmentState.DONE.value]
    with connection.cursor() as cursor:
        cursor.execute(sql, [document.pk, *states, *values])
        row = cursor.fetchone()
    if row is None:
        return None  # being labeled right now, just labeled, or every place is taken
    lease.pk, lease.slot = row
    return lease


def _try_lease(
    project: Project, annotator: AbstractBaseUser, documents: list[Document], reason: dict[str, Any]
) -> Assignment | None:
    for document in documents:
        lease = _insert_lease(document, annotator, reason, project.lease_minutes)
        if lease is not None:
            return lease
    return None


def _lease_pool(
    project: Project,
    annotator: AbstractBaseUser,
    context: q.LeaseContext,
    rng: random.Random,
) -> Lease | None:
    champion = context.champion
    if champion is not None:
        candidates = q.pool_candidates(champion, annotator_id=annotator.pk, first_window=context.ranking)
        if candidates:
            strategy = strategy_get(project.acquisition_strategy)
            ordered = candidates
            # Only a batch-aware strategy passes over near-copies of what others hold (modelsvc.acquisition).
            if context.live_leases and strategy.batch_aware:
                ordered = q.diversify(candidates, *q.leased_points(project, champion))
            # A stochastic strategy's ranking is a seeded draw; its probability is recorded per lease.
            draw = q.stochastic_draw(champion, power=strategy.power) if strategy.power is not None else None
            for c in ordered:
                document, prediction = q.offer(c, champion)
                reason = {
                    "strategy": project.acquisition_strategy,
                    "score": c.score,
                    "holdout": False,
                    "model_version": champion.version,
                    "rank": candidates.index(c) + 1,
                }
                selection = None
                if draw is not None and strategy.power is not None:
                    base = q.candidate_base_score(c)
                    probability = selection_probability(base, strategy.power, draw.normaliser)
                    selection = (probability, draw.pool_size)
                    reason |= {"power": strategy.power, "base": base, "normaliser": draw.normaliser, **draw.describe()}
                lease = _insert_lease(document, annotator, reason, project.lease_minutes, selection=selection)
                if lease is not None:
                    return Lease(lease, prediction)
    if champion is None:
        # Before the first model: the pre-model order (services/coldstart.py), computed once per pool change.
        for r in q.cold_start_ranked(project, annotator_id=annotator.pk):
            reason = {"strategy": r.strategy, "score": None, "holdout": False, "model_version": None, "rank": r.rank}
            lease = _insert_lease(r.document, annotator, reason, project.lease_minutes)
            if lease is not None:
                return Lease(lease, None)
    # Nothing ranked left (or documents the champion has not scored): a seeded random order.
    documents = q.random_unleased(project, split=Split.POOL, annotator_id=annotator.pk, rng=rng)
    reason = {
        "strategy": q.COLD_START_RANDOM,
        "score": None,
        "holdout": False,
        "model_version": champion.version if champion else None,
    }
    lease = _try_lease(project, annotator, documents, reason)
    return Lease(lease, None) if lease is not None else None


def _serve_random(project: Project, context: q.LeaseContext, rng: random.Random) -> bool:
    """Whether this pool lease is a random draw (``Project.random_share``, once a model ranks the pool).

    Drawn from the lease's own seeded generator after the holdout's draw; nothing is drawn when the share
    is 0, so a project without it keeps exactly the order it had.
    """
    return context.champion is not None and project.random_share > 0 and rng.random() < project.random_share


def _lease_random(
    project: Project, annotator: AbstractBaseUser, context: q.LeaseContext, rng: random.Random
) -> Lease | None:
    """A pool document from the seeded random order instead of the strategy's ranking: its label trains the
    model and, as a random draw, joins the holdout in the temperature fit (``selectors.queue.random_draws``)."""
    assert context.champion is not None  # _serve_random draws only once a model ranks the pool
    documents = q.random_unleased(project, split=Split.POOL, annotator_id=annotator.pk, rng=rng)
    reason = {"strategy": q.RANDOM_SHARE, "score": None, "holdout": False, "model_version": context.champion.version}
    lease = _try_lease(project, annotator, documents, reason)
    return Lease(lease, None) if lease is not None else None


def _lease_holdout(project: Project, annotator: AbstractBaseUser, rng: random.Random) -> Lease | None:
    documents = q.random_unleased(project, split=Split.HOLDOUT, annotator_id=annotator.pk, rng=rng)
    reason = {"strategy": "holdout_random", "score": None, "holdout": True, "model_version": None}
    lease = _try_lease(project, annotator, documents, reason)
    return Lease(lease, None) if lease is not None else None


def lease_next(*, project: Project, annotator: AbstractBaseUser) -> Lease | None:
    """The caller's active lease, or a new one on the best free document; None when nothing is left.

    An annotator holds at most one active lease per project, also under parallel calls. Three
    statements on the usual path: begin (no-flush commit, per-annotator lock, expire lapsed leases),
    read the lease context with the ranking's first window, lock-and-insert (plus one for the near-copy rule when
    others hold leases under a batch-aware strategy, or one for the draw's size and weight sum under a
    stochastic one: an aggregate over the champion's open ranking, so it grows with the pool). No retry
    loop: a lost race is an insert that does nothing, and the next candidate is tried.
    """
    with transaction.atomic():
        _lease_transaction_begin(project, annotator)
        context = q.lease_context(project_id=project.pk, annotator_id=annotator.pk)
        if context.active_id is not None:
            return Lease(Assignment.objects.select_related("document").get(pk=context.active_id), None)
        holdout, rng = _serve_holdout(project, annotator, context.lease_count)
        if holdout:
            return _lease_holdout(project, annotator, rng) or _lease_pool(project, annotator, context, rng)
        if _serve_random(project, context, rng):
            lease = _lease_random(project, annotator, context, rng)
            if lease is not None:
                return lease
        return _lease_pool(project, annotator, context, rng) or _lease_holdout(project, annotator, rng)


def assignment_next(*, project: Project, annotator: AbstractBaseUser) -> Assignment | None:
    """``lease_next`` without the prediction: the lease alone."""
    lease = lease_next(project=project, annotator=annotator)
    return lease.assignment if lease is not None else None


def assignment_locked_for(
    assignment: Assignment, user: AbstractBaseUser, *, admin_may: bool, lock_document: bool = False
) -> Assignment:
    """The assignment, row-locked, with its document and project; ``lock_document`` locks the document too."""
    rows = Assignment.objects.select_related("document__project")
    locked = rows.select_for_update(of=("self", "document") if lock_document else ("self",)).get(pk=assignment.pk)
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
