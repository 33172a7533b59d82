"""The Celery app, configured from Django settings and the task registry.

Every task is declared once in ``labeling.services.dispatch.TASKS`` (name, queue kind, arguments,
limits); a worker module registers its function with ``@task(TaskName.X)``, which reads the rest
from the spec. Routing, beat and the include list below come from the same registry.

CPU host (one worker per queue kind keeps a long training or import from delaying scoring)::

    celery -A workers.app worker --queues scoring -n scoring@%h --concurrency 2
    celery -A workers.app worker --queues training -n training@%h --concurrency 1
    celery -A workers.app worker --queues imports -n imports@%h --concurrency 1
    celery -A workers.app worker --queues webhooks -n webhooks@%h --pool threads --concurrency 8

GPU host: ``celery -A workers.app worker --queues gpu -n gpu@%h --concurrency 1`` with
``CELERY_ROUTE_SCORING=gpu CELERY_ROUTE_TRAINING=gpu`` set for every process that *sends* work
(web, beat, workers). Beat (exactly one): ``celery -A workers.app beat``. See docs/WORKERS.md.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import environ
from celery import Celery
from celery.schedules import crontab
from django.db import InterfaceError, OperationalError
from kombu import Queue
from kombu.exceptions import OperationalError as BrokerOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from workers import metrics  # noqa: F401 - connects the task-metric signals; serves them (workers/metrics.py)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labeling.settings")

# Worker-only knobs; Django settings of the same name (if the project adds them) win.
_env = environ.Env()
log = logging.getLogger(__name__)

#: The modules that register tasks (with ``@task``); a test checks they register every spec.
TASK_MODULES = ("workers.tasks", "workers.import_tasks")

#: Errors that go away by themselves: the database or the broker restarting, a dropped connection.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    InterfaceError,
    BrokerOperationalError,
    RedisConnectionError,
    RedisTimeoutError,
)

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

    from labeling.services.dispatch import known_queues, longest_time_limit

    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # One message in hand per worker process: a killed worker strands one message, not a batch,
        # and a long training never sits on scoring messages another worker could take.
        worker_prefetch_multiplier=1,
        task_ignore_result=settings.CELERY_RESULT_BACKEND is None,
        task_default_queue="scoring",
        task_queues=[Queue(name) for name in known_queues()],
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
        # An unacknowledged message is handed out again after this long; it must exceed the longest
        # task's hard limit (an import's) or a running task would be delivered twice.
        longest = longest_time_limit()
        configured = str(_setting("CELERY_VISIBILITY_TIMEOUT", _env.str("CELERY_VISIBILITY_TIMEOUT", default="")))
        visibility = int(configured) if configured.strip() else longest + 600
        if visibility <= longest:
            log.warning("CELERY_VISIBILITY_TIMEOUT=%s is below the longest task's limit (%s s): a task "
                        "running that long is delivered twice", visibility, longest)
        app.conf.broker_transport_options = {"visibility_timeout": visibility}


def _configure_beat() -> None:
    from labeling.services.dispatch import TASKS, TaskName, queue_for

    reconcile_s = float(
        _setting("CELERY_RECONCILE_SECONDS", _env.float("CELERY_RECONCILE_SECONDS", default=60.0))
    )
    nightly_hour = int(_setting("CELERY_RETRAIN_HOUR", _env.int("CELERY_RETRAIN_HOUR", default=2)))
    webhooks_s = float(_setting("WEBHOOK_RECONCILE_SECONDS", 30.0))
    reconcile, nightly = TASKS[TaskName.RECONCILE], TASKS[TaskName.SCHEDULED_RETRAIN]
    webhooks = TASKS[TaskName.WEBHOOK_RECONCILE]
    app.conf.beat_schedule = {
        "reconcile": {
            "task": str(reconcile.name),
            "schedule": reconcile_s,
            "options": {"queue": queue_for(reconcile.kind), "expires": reconcile_s},
        },
        "webhooks-reconcile": {
            "task": str(webhooks.name),
            "schedule": webhooks_s,
            "options": {"queue": queue_for(webhooks.kind), "expires": webhooks_s},
        },
        "nightly-retrain": {
            "task": str(nightly.name),
            "schedule": crontab(hour=nightly_hour, minute=0),
            "options": {"queue": queue_for(nightly.kind)},
        },
    }


def task(name: str, *, retry_also: tuple[type[BaseException], ...] = ()) -> Callable[[Callable[..., Any]], Any]:
    """Register a task function under its spec in ``dispatch.TASKS``: name, limits, delivery, retries.

    ``retry_also``: service errors that mean "try again shortly" (a lock held elsewhere); they are
    named here because the services that define them import the registry.
    """
    from labeling.services.dispatch import TASKS, TaskName

    spec = TASKS[TaskName(name)]
    retry = (*TRANSIENT_ERRORS, *retry_also) if spec.retry_transient else retry_also
    options: dict[str, Any] = {}
    if retry:
        options = {"autoretry_for": retry, "retry_backoff": 2, "retry_backoff_max": 60, "retry_jitter": True,
                   "max_retries": 8}
    return app.task(
        name=str(spec.name),
        soft_time_limit=spec.soft_time_limit,
        time_limit=spec.time_limit,
        # Every task is idempotent, so a message lost with its worker is delivered again.
        acks_late=True,
        reject_on_worker_lost=True,
        **options,
    )


_configure_embedded_broker()
_configure_reliability()
_configure_beat()
app.conf.include = list(TASK_MODULES)
