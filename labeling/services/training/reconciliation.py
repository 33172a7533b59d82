"""The beat's repair: fail runs whose worker died, resend runs whose message was lost, check thresholds."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from labeling.models import Project, RunStatus, TrainingRun
from labeling.services import modeling
from labeling.services.dispatch import TASKS, TaskName, enqueue
from labeling.services.training.runs import training_run_fail
from labeling.services.training.triggers import project_check_retrain

log = logging.getLogger(__name__)

#: The TRAIN task's hard time limit; on SQLite (no advisory locks) a run older than this is dead.
TRAIN_TIME_LIMIT_S = TASKS[TaskName.TRAIN].time_limit
#: A queued run whose message has not started it after this long is sent again (lost message).
REQUEUE_AFTER_S = 600


def _orphaned(run: TrainingRun) -> bool:
    if connection.vendor == "postgresql":
        return modeling.lock_is_free(modeling.LOCK_TRAINING, run.pk)
    started = run.started_at or run.created_at
    return started < timezone.now() - timedelta(seconds=TRAIN_TIME_LIMIT_S)


def training_reconcile() -> dict[str, Any]:
    """Beat: fail runs whose worker died, resend runs whose message was lost, check thresholds."""
    failed = []
    for run in TrainingRun.objects.filter(status=RunStatus.RUNNING):
        if _orphaned(run):
            training_run_fail(run.pk, "the worker executing this run stopped (killed, crashed or out of memory)")
            failed.append(run.pk)
    cutoff = timezone.now() - timedelta(seconds=REQUEUE_AFTER_S)
    resent = list(
        TrainingRun.objects.filter(status=RunStatus.QUEUED, created_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for run_id in resent:
        enqueue(TaskName.TRAIN, args=(run_id,))
    requested = []
    for project_id in Project.objects.values_list("pk", flat=True):
        run = project_check_retrain(project_id=project_id, count_if_open=False)
        if run is not None:
            requested.append(run.pk)
    if failed or resent:
        log.warning("training reconcile: failed orphaned runs %s, resent queued runs %s", failed, resent)
    return {"runs_failed": failed, "runs_resent": resent, "runs_requested": requested}
