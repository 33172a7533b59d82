"""Retention: predictions of superseded model versions are deleted, a bounded batch at a time.

Every promotion writes one prediction per document (about 300 bytes a row on PostgreSQL,
docs/DEPLOYMENT.md "Disk"), so at 10 million documents each model version adds about 3 GB. The
beat task ``PRUNE_PREDICTIONS`` keeps, per project:

- the champion (the queue, the labeling page and exports read its rows),
- the ``PREDICTION_KEEP_PREVIOUS`` most recently promoted retired versions: the first of them is
  the one ``model_version_rollback`` restores, so a rollback serves at once instead of re-scoring,
- every version still in training or a candidate, and any version a queued or running training
  run (or a re-score still in progress) names.

Everything else (rejected versions, versions retired longer ago) loses its predictions; the model
version row, its metrics and artifact stay. Each batch is its own short transaction that re-reads
the keep set under the project's row lock (the lock promotions and rollbacks take), so a batch never
deletes rows of a version that a concurrent rollback has just made champion or rollback target, and
no statement holds locks on more than ``PREDICTION_PRUNE_BATCH`` rows. Running it twice, or in two
processes at once, deletes each row once; the next beat resumes whatever a budget or a crash left.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q

from labeling.models import ModelStatus, ModelVersion, Prediction, Project, RunStatus, TrainingRun

log = logging.getLogger(__name__)

#: A prune task stops after this long; the next beat (or its continuation) resumes.
PRUNE_TIME_BUDGET_S = 120.0


@dataclass
class PruneReport:
    deleted: int = 0
    batches: int = 0
    projects: list[int] = field(default_factory=list)  # projects that had predictions to delete
    remaining: bool = False  # stopped on the time budget with rows still to delete


def model_versions_retained(*, project_id: int, keep_previous: int | None = None) -> set[int]:
    """Ids of the project's model versions whose predictions are kept (see the module docstring)."""
    keep = settings.PREDICTION_KEEP_PREVIOUS if keep_previous is None else keep_previous
    versions = ModelVersion.objects.filter(project_id=project_id)
    kept = set(
        versions.filter(status__in=[ModelStatus.CHAMPION, ModelStatus.TRAINING, ModelStatus.CANDIDATE]).values_list(
            "pk", flat=True
        )
    )
    if keep > 0:
        # The same order model_version_rollback picks its target by.
        kept.update(
            versions.filter(status=ModelStatus.RETIRED, promoted_at__isnull=False)
            .order_by("-promoted_at", "-version")
            .values_list("pk", flat=True)[:keep]
        )
    kept.update(
        TrainingRun.objects.filter(project_id=project_id, model_version__isnull=False)
        .filter(Q(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]) | Q(stage="rescore"))
        .values_list("model_version_id", flat=True)
    )
    return kept


def _prunable(project_id: int, keep_previous: int | None) -> list[int]:
    kept = model_versions_retained(project_id=project_id, keep_previous=keep_previous)
    return list(ModelVersion.objects.filter(project_id=project_id).exclude(pk__in=kept).values_list("pk", flat=True))


def _delete_batch(project_id: int, *, keep_previous: int | None, batch: int) -> int:
    """Delete up to ``batch`` predictions of the project's prunable versions; the rows deleted."""
    table = connection.ops.quote_name(Prediction._meta.db_table)
    with transaction.atomic():
        # Promotions and rollbacks lock this row (FOR UPDATE) while they change statuses: holding it
        # for one batch makes the keep set below the one that stands until the batch commits.
        if not Project.objects.select_for_update(no_key=True).filter(pk=project_id).exists():
            return 0
        prunable = _prunable(project_id, keep_previous)
        if not prunable:
            return 0
        versions = ", ".join(["%s"] * len(prunable))
        # The foreign key's index finds the rows; SKIP LOCKED leaves rows another pruner holds (SQLite, the
        # demo's database, has no row locks and runs one writer at a time).
        skip = " FOR UPDATE SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""
        with connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN (SELECT id FROM {table} WHERE model_version_id IN ({versions})"
                f" LIMIT %s{skip})",
                [*prunable, batch],
            )
            return int(cursor.rowcount)


def predictions_prune(
    *, project_id: int | None = None, keep_previous: int | None = None, batch_size: int | None = None,
    time_budget_s: float | None = None,
) -> PruneReport:
    """Delete predictions of superseded model versions (every project, or ``project_id``'s).

    ``keep_previous``: retired versions kept besides the champion (``PREDICTION_KEEP_PREVIOUS``);
    ``batch_size``: rows per transaction (``PREDICTION_PRUNE_BATCH``). Stops after ``time_budget_s``
    with ``remaining`` set.
    """
    batch = settings.PREDICTION_PRUNE_BATCH if batch_size is None else batch_size
    budget = PRUNE_TIME_BUDGET_S if time_budget_s is None else time_budget_s
    if batch < 1:
        raise ValueError("batch_size must be at least 1")
    report = PruneReport()
    started = time.monotonic()
    projects = Project.objects.order_by("pk").values_list("pk", flat=True)
    if project_id is not None:
        projects = projects.filter(pk=project_id)
    for pid in list(projects):
        while True:
            deleted = _delete_batch(pid, keep_previous=keep_previous, batch=batch)
            if not deleted:
                break
            report.deleted += deleted
            if pid not in report.projects:
                report.projects.append(pid)
            report.batches += 1
            if time.monotonic() - started > budget:
                report.remaining = True
                break
        if report.remaining:
            break
    if report.deleted:
        log.info("pruned %s predictions in %s batches", report.deleted, report.batches)
    return report
