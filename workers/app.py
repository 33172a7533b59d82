"""The Celery app, configured from Django settings.

CPU host (one worker per queue kind keeps a long training from delaying scoring)::

    celery -A workers.app worker --queues scoring -n scoring@%h --concurrency 2
    celery -A workers.app worker --queues training -n training@%h --concurrency 1

GPU host: ``celery -A workers.app worker --queues gpu -n gpu@%h --concurrency 1`` with
``CELERY_ROUTE_SCORING=gpu CELERY_ROUTE_TRAINING=gpu`` set for every process that *sends* work
(web, beat, workers). Beat (exactly one): ``celery -A workers.app beat``. See docs/WORKERS.md.
"""

from __future__ import annotations

import os
from typing import Any

import environ
from celery import Celery
from celery.schedules import crontab
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")

# Worker-only knobs; Django settings of the same name (if the project adds them) win.
_env = environ.Env()

app = Celery("alabel")
app.config_from_object("django.conf:settings", namespace="CELERY")


def _setting(name: str, default: Any) -> Any:
    from django.conf import settings

    return getattr(settings, name, default)


def _configure_embedded_broker() -> None:
    """The demo's server-less broker: kombu's filesystem transport in one shared folder."""
    from django.conf import settings

    if not str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
        return
    folder = settings.CELERY_FILESYSTEM_BROKER_DIR
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "store_processed": False,
    }


def _configure_reliability() -> None:
    """Every task is idempotent, so a message is acknowledged only after its task finished."""
    from django.conf import settings

    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message in hand per worker process: a killed worker strands one message, not a batch,
        # and a long training never sits on scoring messages another worker could take.
        worker_prefetch_multiplier=1,
        task_ignore_result=settings.CELERY_RESULT_BACKEND is None,
        task_default_queue="scoring",
        task_queues=[Queue("scoring"), Queue("training"), Queue("gpu")],
        task_create_missing_queues=True,
        broker_connection_retry_on_startup=True,
        # The broker may restart: an acked-late task whose connection dropped cannot be acked, so
        # it is cancelled and its message delivered again (idempotent) instead of running twice.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        # ... and a lost connection with such a task running must not end the worker (workers/consumer.py).
        worker_consumer="workers.consumer:Consumer",
        worker_hijack_root_logger=False,
        timezone="UTC",
    )
    if str(settings.CELERY_BROKER_URL).startswith(("redis://", "rediss://")):
        # An unacknowledged message is handed out again after this long; it must exceed the hard time
        # limit of every task on this broker or a running task would be delivered twice.
        app.conf.broker_transport_options = {
            "visibility_timeout": int(
                _setting("CELERY_VISIBILITY_TIMEOUT", _env.int("CELERY_VISIBILITY_TIMEOUT", default=7200))
            ),
        }


def _configure_beat() -> None:
    from django.conf import settings

    from labeling.services.dispatch import TaskName

    reconcile_s = float(
        _setting("CELERY_RECONCILE_SECONDS", _env.float("CELERY_RECONCILE_SECONDS", default=60.0))
    )
    nightly_hour = int(_setting("CELERY_RETRAIN_HOUR", _env.int("CELERY_RETRAIN_HOUR", default=2)))
    app.conf.beat_schedule = {
        "reconcile": {
            "task": str(TaskName.RECONCILE),
            "schedule": reconcile_s,
            "options": {"queue": settings.CELERY_ROUTE_SCORING, "expires": reconcile_s},
        },
        "nightly-retrain": {
            "task": str(TaskName.SCHEDULED_RETRAIN),
            "schedule": crontab(hour=nightly_hour, minute=0),
            "options": {"queue": settings.CELERY_ROUTE_TRAINING},
        },
    }


_configure_embedded_broker()
_configure_reliability()
_configure_beat()
# One module per area; each is a thin layer over labeling.services.
app.conf.include = ["workers.tasks", "workers.import_tasks"]
