"""The tasks called directly (in this process) with their services, their delivery options and routing."""

from __future__ import annotations

import inspect
import json

import pytest
import redis
from django.db import OperationalError

from labeling.models import ModelStatus, Prediction, RunStatus
from labeling.services.dispatch import TASKS, QueueKind, TaskName, enqueue, longest_time_limit
from labeling.services.training import reconciliation
from tests.factories import DocumentFactory, ProjectFactory
from tests.support.celery_worker import redis_flush
from tests.support.fixtures import labeled_project, shared_embedding_cache  # noqa: F401
from workers import tasks
from workers.app import TASK_MODULES, app

pytestmark = [pytest.mark.django_db]


def test_every_task_is_registered_under_its_dispatch_name_with_safe_delivery() -> None:
    import_task = {TaskName.IMPORT_FILE}  # owned by workers/import_tasks.py
    for name in set(TaskName) - import_task:
        task = app.tasks[str(name)]
        assert task.acks_late and task.reject_on_worker_lost, name
        assert task.time_limit and task.soft_time_limit and task.soft_time_limit < task.time_limit, name
        assert Exception not in task.autoretry_for and OperationalError in task.autoretry_for, name
    assert app.conf.worker_prefetch_multiplier == 1


def test_the_registry_and_the_registered_tasks_agree() -> None:
    """Each spec has exactly one task in the worker's modules, with the spec's limits and arguments."""
    app.loader.import_default_modules()
    assert set(app.conf.include) == set(TASK_MODULES)
    registered = {name for name in app.tasks if name.startswith("alabel.")}
    assert registered == {str(name) for name in TASKS}
    for name, spec in TASKS.items():
        task = app.tasks[str(name)]
        assert (task.soft_time_limit, task.time_limit) == (spec.soft_time_limit, spec.time_limit), name
        assert tuple(inspect.signature(task.run).parameters) == spec.args._fields, name
        assert task.__module__ in TASK_MODULES, name
    # The reconciliation's orphaned-run rule and the broker's redelivery both follow the limits.
    assert reconciliation.TRAIN_TIME_LIMIT_S == TASKS[TaskName.TRAIN].time_limit
    if "visibility_timeout" in app.conf.broker_transport_options:
        assert app.conf.broker_transport_options["visibility_timeout"] > longest_time_limit()


def test_a_message_for_a_project_without_champion_or_a_missing_run_is_a_noop() -> None:
    project = ProjectFactory()
    DocumentFactory(project=project)
    assert tasks.score_pending(project.pk)["scored"] == 0
    assert tasks.train(123456) is None
    assert tasks.check_retrain(project.pk) is None
    assert tasks.attribute(123456) == 0
    assert tasks.scheduled_retrain() == []
    assert set(tasks.reconcile()) >= {"scoring_enqueued", "assignments_expired", "runs_failed", "runs_resent"}


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_train_score_and_attribute_tasks_do_the_work(django_capture_on_commit_callbacks) -> None:
    project = labeled_project(pool=30, holdout=0, unlabeled=10, retrain_after=20)
    with django_capture_on_commit_callbacks():
        run_id = tasks.check_retrain(project.pk)  # 30 labels >= retrain_after: a run is queued
    assert run_id is not None
    summary = tasks.train(run_id)
    assert summary["status"] == RunStatus.SUCCEEDED and summary["promoted"]
    assert tasks.score_pending(project.pk)["scored"] == project.documents.count()
    prediction = Prediction.objects.filter(model_version__status=ModelStatus.CHAMPION).first()
    words = tasks.attribute(prediction.pk)
    prediction.refresh_from_db()
    assert words == len(prediction.attributions) == len(prediction.document.text.split())
    assert all(isinstance(w, str) and isinstance(s, float) for w, s in prediction.attributions)


def test_routing_is_a_setting(settings, django_capture_on_commit_callbacks) -> None:
    """A GPU host takes scoring by configuration: CELERY_ROUTE_SCORING=gpu sends to the gpu queue."""
    url = str(settings.CELERY_BROKER_URL)
    redis_flush(url)
    settings.CELERY_ROUTE_SCORING = "gpu"
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(TaskName.SCORE_PENDING, args=(7,), kind=QueueKind.SCORING)
        enqueue(TaskName.CHECK_RETRAIN, args=(7,), kind=QueueKind.TRAINING)
    client = redis.Redis.from_url(url)
    try:
        gpu = [json.loads(m) for m in client.lrange("gpu", 0, -1)]
        training = [json.loads(m) for m in client.lrange("training", 0, -1)]
    finally:
        redis_flush(url)
        client.close()
    assert [m["headers"]["task"] for m in gpu] == [str(TaskName.SCORE_PENDING)]
    assert [m["headers"]["task"] for m in training] == [str(TaskName.CHECK_RETRAIN)]


def test_imports_ride_their_own_queue(settings, django_capture_on_commit_callbacks) -> None:
    """A six-hour import never takes a scoring worker: it goes to CELERY_ROUTE_IMPORTS ("imports")."""
    url = str(settings.CELERY_BROKER_URL)
    redis_flush(url)
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(TaskName.IMPORT_FILE, args=(7,))
    client = redis.Redis.from_url(url)
    try:
        imports = [json.loads(m) for m in client.lrange("imports", 0, -1)]
        scoring = client.llen("scoring")
    finally:
        redis_flush(url)
        client.close()
    assert [m["headers"]["task"] for m in imports] == [str(TaskName.IMPORT_FILE)] and scoring == 0
