"""When a retrain is due, and queueing one: never two open runs per project."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from labeling.models import (
    Annotation,
    AuditAction,
    Project,
    ReviewDecision,
    RunStatus,
    RunTrigger,
    Split,
    TrainingRun,
)
from labeling.selectors.models import OPEN_RUN_STATES, labeled_count, latest_trained_version
from labeling.services.audit import audit_record
from labeling.services.dispatch import TaskName, enqueue

log = logging.getLogger(__name__)

#: After a failed run, automatic triggers wait this long before trying again.
FAILED_RUN_BACKOFF_S = 600


def _audit_manual(project: Project, run: TrainingRun, requested_by: Any, *, coalesced: bool) -> None:
    audit_record(
        actor=requested_by, action=AuditAction.RETRAIN_REQUESTED, project=project, target=run,
        data={"run": run.pk, "coalesced": coalesced},
    )


def training_run_request(*, project: Project, trigger: str, requested_by: Any = None) -> TrainingRun:
    """Queue a run, or count the trigger on the project's open run (never two at once).

    A manual request (the API, ``manage.py retrain``) is recorded in the audit log, coalesced or not.
    """
    with transaction.atomic():
        open_run = (
            TrainingRun.objects.select_for_update()
            .filter(project=project, status__in=OPEN_RUN_STATES)
            .first()
        )
        if open_run is None:
            try:
                with transaction.atomic():
                    run = TrainingRun.objects.create(
                        project=project, trigger=trigger, requested_by=requested_by
                    )
            except IntegrityError:  # one_open_training_run_per_project: a concurrent request won
                open_run = TrainingRun.objects.select_for_update().get(
                    project=project, status__in=OPEN_RUN_STATES
                )
            else:
                enqueue(TaskName.TRAIN, args=(run.pk,))
                if trigger == RunTrigger.MANUAL:
                    _audit_manual(project, run, requested_by, coalesced=False)
                return run
        TrainingRun.objects.filter(pk=open_run.pk).update(coalesced_triggers=F("coalesced_triggers") + 1)
        open_run.refresh_from_db()
        if trigger == RunTrigger.MANUAL:
            _audit_manual(project, open_run, requested_by, coalesced=True)
        return open_run


def _label_classes(project: Project) -> int:
    """How many distinct current answers the pool's labels hold (a label name, or a multi-label set)."""
    space = project.label_space
    answers = (
        Annotation.objects.filter(project=project, document__split=Split.POOL)
        .order_by()
        .values_list("label", flat=True)
        .distinct()[:100]  # a first model needs 2; a multi-label pool may hold thousands of distinct sets
    )
    return sum(1 for answer in answers if space.is_current(answer))


def retrain_due(project: Project, *, any_new: bool = False) -> tuple[bool, str]:
    """Whether enough new pool labels exist for a retrain, and why (``any_new``: the nightly rule)."""
    labeled = labeled_count(project_id=project.pk, split=Split.POOL)
    baseline = latest_trained_version(project_id=project.pk)
    if baseline is None:
        needed = max(project.retrain_after, 2 * len(project.label_names))
        if labeled < needed:
            return False, f"{labeled} of the {needed} labels a first model needs"
        if _label_classes(project) < 2:
            return False, "the labels cover a single class; a model needs at least 2"
        return True, f"{labeled} labels: enough for a first model"
    # A reviewer's decision changes what the model trains on: it counts like a new label.
    decided = ReviewDecision.objects.filter(project=project, created_at__gt=baseline.created_at).count()
    new = labeled - baseline.train_label_count + decided
    threshold = 1 if any_new else project.retrain_after
    due = new >= threshold
    return due, f"{new} new labels since v{baseline.version} (retrain after {threshold})"


def _recently_failed(project: Project) -> bool:
    last = TrainingRun.objects.filter(project=project).order_by("-id").first()
    return (
        last is not None
        and last.status == RunStatus.FAILED
        and last.finished_at is not None
        and last.finished_at > timezone.now() - timedelta(seconds=FAILED_RUN_BACKOFF_S)
    )


def project_check_retrain(
    *, project_id: int, trigger: str = RunTrigger.THRESHOLD, count_if_open: bool = True
) -> TrainingRun | None:
    """Request a run when the project is due (after label submissions and on the beat).

    ``count_if_open=False`` (the beat's periodic check) leaves an open run alone instead of
    counting one more coalesced trigger on it every minute.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None or _recently_failed(project):
        return None
    if not count_if_open and TrainingRun.objects.filter(project=project, status__in=OPEN_RUN_STATES).exists():
        return None
    due, reason = retrain_due(project, any_new=trigger == RunTrigger.SCHEDULE)
    if not due:
        return None
    log.info("project %s: retrain (%s): %s", project_id, trigger, reason)
    return training_run_request(project=project, trigger=trigger)


def training_scheduled() -> list[int]:
    """Nightly: a run for every project with any label its latest model has not seen."""
    runs = [
        project_check_retrain(project_id=pk, trigger=RunTrigger.SCHEDULE, count_if_open=False)
        for pk in Project.objects.values_list("pk", flat=True)
    ]
    return [run.pk for run in runs if run is not None]
