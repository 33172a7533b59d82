"""Thin tasks: ids (and a model-version token) in, one service call, a small summary out.

Every task is idempotent (predictions are upserted on (document, model_version); a training run is
single-flight and claimed under a lock), so ``acks_late`` + ``reject_on_worker_lost`` may deliver a
message again after a crash without harm. Only named transient errors are retried.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from django.db import InterfaceError, OperationalError
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from labeling.models import Prediction
from labeling.services import modeling, scoring
from labeling.services.dispatch import TaskName
from labeling.services.errors import RunLockedError, ScoringBusyError
from labeling.services.training import reconciliation, runs, triggers
from workers.app import app

#: Errors that go away by themselves: the database or the broker restarting, a dropped connection.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    BrokerOperationalError,
    RedisConnectionError,
    RedisTimeoutError,
)
_RELIABLE: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": TRANSIENT_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 8,
}


@app.task(name=str(TaskName.SCORE_PENDING), soft_time_limit=300, time_limit=360, **_RELIABLE)
def score_pending(project_id: int) -> dict[str, Any]:
    return dataclasses.asdict(scoring.project_score_pending(project_id=project_id))


@app.task(
    name=str(TaskName.RESCORE_POOL),
    soft_time_limit=300,
    time_limit=360,
    **{**_RELIABLE, "autoretry_for": (*TRANSIENT_ERRORS, ScoringBusyError)},
)
def rescore_pool(run_id: int, model_version_id: int) -> dict[str, Any]:
    return dataclasses.asdict(scoring.model_version_rescore(run_id=run_id, model_version_id=model_version_id))


@app.task(name=str(TaskName.RECONCILE), soft_time_limit=60, time_limit=90, **_RELIABLE)
def reconcile() -> dict[str, Any]:
    return {**scoring.scoring_reconcile(), **reconciliation.training_reconcile()}


@app.task(name=str(TaskName.ATTRIBUTE), soft_time_limit=60, time_limit=90, **_RELIABLE)
def attribute(prediction_id: int) -> int:
    prediction = (
        Prediction.objects.select_related("document", "model_version").filter(pk=prediction_id).first()
    )
    if prediction is None:
        return 0
    return len(modeling.prediction_attributions(prediction=prediction))


@app.task(
    name=str(TaskName.TRAIN),
    soft_time_limit=reconciliation.TRAIN_TIME_LIMIT_S - 120,
    time_limit=reconciliation.TRAIN_TIME_LIMIT_S,
    **{**_RELIABLE, "autoretry_for": (*TRANSIENT_ERRORS, RunLockedError)},
)
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


@app.task(name=str(TaskName.CHECK_RETRAIN), soft_time_limit=30, time_limit=60, **_RELIABLE)
def check_retrain(project_id: int) -> int | None:
    run = triggers.project_check_retrain(project_id=project_id)
    return None if run is None else run.pk


@app.task(name=str(TaskName.SCHEDULED_RETRAIN), soft_time_limit=60, time_limit=90, **_RELIABLE)
def scheduled_retrain() -> list[int]:
    return triggers.training_scheduled()
