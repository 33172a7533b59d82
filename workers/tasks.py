"""Thin tasks: ids (and a model-version token) in, one service call, a small summary out.

Each task's name, queue kind, arguments and limits are declared in ``labeling.services.dispatch.TASKS``;
``@task`` registers the function under that spec. Every task is idempotent (predictions are upserted
on (document, model_version); a training run is single-flight and claimed under a lock), so
``acks_late`` + ``reject_on_worker_lost`` may deliver a message again after a crash without harm.
Only named transient errors are retried.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from labeling.models import Prediction
from labeling.services import import_jobs, modeling, retention, scoring, webhooks
from labeling.services.dispatch import TaskName
from labeling.services.errors import RunLockedError, ScoringBusyError
from labeling.services.training import reconciliation, runs, triggers
from workers.app import task


@task(TaskName.SCORE_PENDING)
def score_pending(project_id: int) -> dict[str, Any]:
    return dataclasses.asdict(scoring.project_score_pending(project_id=project_id))


@task(TaskName.RESCORE_POOL, retry_also=(ScoringBusyError,))
def rescore_pool(run_id: int, model_version_id: int) -> dict[str, Any]:
    return dataclasses.asdict(scoring.model_version_rescore(run_id=run_id, model_version_id=model_version_id))


@task(TaskName.RESCORE_SLICE, retry_also=(ScoringBusyError,))
def rescore_slice(run_id: int, model_version_id: int, slice_index: int, first_id: int, last_id: int) -> dict[str, Any]:
    id_slice = scoring.IdSlice(slice_index, first_id, last_id)
    report = scoring.model_version_rescore_slice(run_id=run_id, model_version_id=model_version_id, id_slice=id_slice)
    return dataclasses.asdict(report)


@task(TaskName.RECONCILE)
def reconcile() -> dict[str, Any]:
    return {**scoring.scoring_reconcile(), **reconciliation.training_reconcile(), **import_jobs.imports_reconcile()}


@task(TaskName.PRUNE_PREDICTIONS)
def prune_predictions() -> dict[str, Any]:
    return dataclasses.asdict(retention.predictions_prune())


@task(TaskName.ATTRIBUTE)
def attribute(prediction_id: int) -> int:
    prediction = (
        Prediction.objects.select_related("document", "model_version").filter(pk=prediction_id).first()
    )
    if prediction is None:
        return 0
    return len(modeling.prediction_attributions(prediction=prediction))


@task(TaskName.TRAIN, retry_also=(RunLockedError,))
def train(run_id: int) -> dict[str, Any] | None:
    run = runs.training_run_execute(run_id=run_id)
    if run is None:
        return None
    return {
        "run": run.pk,
        "status": run.status,
        "promoted": run.promoted,
        "model_version": run.model_version_id,
    }


@task(TaskName.CHECK_RETRAIN)
def check_retrain(project_id: int) -> int | None:
    run = triggers.project_check_retrain(project_id=project_id)
    return None if run is None else run.pk


@task(TaskName.SCHEDULED_RETRAIN)
def scheduled_retrain() -> list[int]:
    return triggers.training_scheduled()


@task(TaskName.WEBHOOK_DELIVER)
def webhook_deliver(delivery_id: int) -> str | None:
    return webhooks.delivery_attempt(delivery_id=delivery_id)


@task(TaskName.WEBHOOK_RECONCILE)
def webhook_reconcile() -> dict[str, int]:
    return webhooks.webhooks_reconcile()
