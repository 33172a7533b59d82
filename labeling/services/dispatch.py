"""The task registry, and enqueueing background work after the current transaction commits.

Services never import ``workers`` (the dependency points the other way), so every Celery task is
declared here once: its name, the kind of queue it rides, its typed arguments and its time limits
(``TASKS``). The workers register their functions from these specs (``workers.app.task``), beat
and ``enqueue`` route by them, and a test fails when a spec and a registered task disagree.

Routing a kind to a concrete queue (``scoring`` / ``training`` / ``imports`` / ``webhooks`` / ``gpu``) is a
setting, so a GPU host takes the work by configuration, not code edits.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple, get_type_hints

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction


class TaskName(enum.StrEnum):
    SCORE_PENDING = "alabel.scoring.score_pending"
    RESCORE_POOL = "alabel.scoring.rescore_pool"
    RESCORE_SLICE = "alabel.scoring.rescore_slice"
    RECONCILE = "alabel.scoring.reconcile"
    PRUNE_PREDICTIONS = "alabel.scoring.prune_predictions"
    ATTRIBUTE = "alabel.scoring.attribute"
    TRAIN = "alabel.training.train"
    CHECK_RETRAIN = "alabel.training.check_retrain"
    SCHEDULED_RETRAIN = "alabel.training.scheduled"
    IMPORT_FILE = "alabel.imports.import_file"
    WEBHOOK_DELIVER = "alabel.webhooks.deliver"
    WEBHOOK_RECONCILE = "alabel.webhooks.reconcile"


class QueueKind(enum.StrEnum):
    SCORING = "scoring"
    TRAINING = "training"
    # Imports run for hours: on their own queue a large file never holds a scoring process.
    IMPORTS = "imports"
    # Webhook deliveries wait on other people's servers: on their own queue a slow receiver never
    # holds a scoring or training process, and a long training never delays a delivery.
    WEBHOOKS = "webhooks"


def queue_for(kind: QueueKind) -> str:
    """The queue this process sends ``kind`` to (``CELERY_ROUTE_<KIND>``)."""
    match kind:
        case QueueKind.SCORING:
            return str(settings.CELERY_ROUTE_SCORING)
        case QueueKind.TRAINING:
            return str(settings.CELERY_ROUTE_TRAINING)
        case QueueKind.IMPORTS:
            return str(settings.CELERY_ROUTE_IMPORTS)
        case QueueKind.WEBHOOKS:
            return str(settings.CELERY_ROUTE_WEBHOOKS)


#: The queue a CUDA host's worker consumes when CELERY_ROUTE_SCORING / _TRAINING name it.
GPU_QUEUE = "gpu"


def known_queues() -> list[str]:
    """Every queue work can be routed to: each kind's own, the GPU queue, and what the routes name."""
    return sorted({*(kind.value for kind in QueueKind), GPU_QUEUE, *(queue_for(kind) for kind in QueueKind)})


# --- the arguments a task takes: the message carries them positionally, in this order -------------


class NoArgs(NamedTuple):
    pass


class ProjectArgs(NamedTuple):
    project_id: int


class RunArgs(NamedTuple):
    run_id: int


class RescoreArgs(NamedTuple):
    run_id: int
    model_version_id: int


class SliceArgs(NamedTuple):
    run_id: int
    model_version_id: int
    slice_index: int
    first_id: int
    last_id: int


class PredictionArgs(NamedTuple):
    prediction_id: int


class ImportJobArgs(NamedTuple):
    import_job_id: int


class DeliveryArgs(NamedTuple):
    delivery_id: int


@dataclass(frozen=True)
class TaskSpec:
    """One Celery task: what senders, routing, beat and the worker's registration all read.

    ``retry_transient``: retry the workers' named transient errors (database or broker restarting);
    further retryable errors are service exceptions, named where the task is registered because
    their modules import this one.
    """

    name: TaskName
    kind: QueueKind
    args: type[tuple[Any, ...]]
    soft_time_limit: int
    time_limit: int
    retry_transient: bool = True
    doc: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.soft_time_limit < self.time_limit:
            raise ValueError(f"{self.name}: need 0 < soft_time_limit < time_limit")

    def check(self, args: tuple[Any, ...]) -> tuple[Any, ...]:
        """``args`` as the declared NamedTuple; TypeError when their number or a type is wrong."""
        values = self.args(*args)
        for field, hint in get_type_hints(self.args).items():
            value = getattr(values, field)
            if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
                raise TypeError(f"{self.name}: {field} must be {hint.__name__}, got {value!r}")
        return values


# Each row: name, queue kind, arguments, soft and hard time limit in seconds.
TASKS: Mapping[TaskName, TaskSpec] = MappingProxyType({spec.name: spec for spec in (
    TaskSpec(TaskName.SCORE_PENDING, QueueKind.SCORING, ProjectArgs, 300, 360,
             doc="coalesced scoring of new documents"),
    TaskSpec(TaskName.RESCORE_POOL, QueueKind.SCORING, RescoreArgs, 300, 360,
             doc="the pool under a new champion, chunked and resumable"),
    TaskSpec(TaskName.RESCORE_SLICE, QueueKind.SCORING, SliceArgs, 300, 360,
             doc="one id range of a re-score split over several workers (SCORING_SLICES)"),
    TaskSpec(TaskName.RECONCILE, QueueKind.SCORING, NoArgs, 60, 90,
             doc="beat: unscored documents, lapsed leases, orphaned runs"),
    # Its own 120 s budget (retention.PRUNE_TIME_BUDGET_S) stops it well inside the limit; beat resumes.
    TaskSpec(TaskName.PRUNE_PREDICTIONS, QueueKind.SCORING, NoArgs, 300, 360,
             doc="beat: delete predictions of superseded model versions, in batches"),
    # Enqueued when the labeling page asks for a prediction's highlights (modeling.prediction_attributions_request).
    TaskSpec(TaskName.ATTRIBUTE, QueueKind.SCORING, PredictionArgs, 60, 90, doc="token highlights"),
    # On SQLite the reconciliation counts a run older than the hard limit as orphaned.
    TaskSpec(TaskName.TRAIN, QueueKind.TRAINING, RunArgs, 3600 - 120, 3600,
             doc="train, calibrate, gate, promote"),
    TaskSpec(TaskName.CHECK_RETRAIN, QueueKind.TRAINING, ProjectArgs, 30, 60,
             doc="debounced threshold check after labels"),
    TaskSpec(TaskName.SCHEDULED_RETRAIN, QueueKind.TRAINING, NoArgs, 60, 90, doc="beat, nightly"),
    # Not retried: once it has started, a failure marks the job failed and a retry would find it so.
    TaskSpec(TaskName.IMPORT_FILE, QueueKind.IMPORTS, ImportJobArgs, 6 * 3600, 6 * 3600 + 60,
             retry_transient=False, doc="a bulk file import, up to 6 h"),
    # One HTTP POST (WEBHOOK_TIMEOUT_S at most); a failed attempt schedules the next itself.
    TaskSpec(TaskName.WEBHOOK_DELIVER, QueueKind.WEBHOOKS, DeliveryArgs, 60, 90,
             doc="one webhook delivery attempt"),
    TaskSpec(TaskName.WEBHOOK_RECONCILE, QueueKind.WEBHOOKS, NoArgs, 60, 90,
             doc="beat: re-send due deliveries whose message was lost"),
)})


def longest_time_limit() -> int:
    """The longest hard limit of any task: the broker's redelivery timeout must exceed it."""
    return max(spec.time_limit for spec in TASKS.values())


def enqueue(
    name: TaskName, *, args: tuple[Any, ...] = (), kind: QueueKind | None = None,
    countdown: float | None = None, coalesce_s: float | None = None,
) -> None:
    """Send ``name`` once the surrounding transaction commits (at once outside one).

    ``args`` are checked against the task's declared arguments now, in the caller, so a wrong
    message fails where it is written rather than in a worker. The queue is the task's declared
    kind; a caller that names ``kind`` too must name the same one.

    ``coalesce_s``: send at most one message per (name, args) in that many seconds (a key in the
    cache: per process, or across replicas with CACHE_URL). Use it with a ``countdown`` longer than
    the window, so the message that was sent runs after every commit it stands in for.

    A broker outage is logged, not raised: the caller's data is already committed, and the beat
    reconciliation task finds whatever a lost message left undone.
    """
    spec = TASKS[name]
    if kind is not None and kind is not spec.kind:
        raise ValueError(f"{name} is declared on the {spec.kind} queue kind, not {kind}")
    message = tuple(spec.check(args))

    def send() -> None:
        if coalesce_s is not None and not cache.add(f"alabel:enqueue:{name}:{message}", 1, timeout=coalesce_s):
            return  # a message sent moments ago has not run yet and will see this commit
        current_app.send_task(str(name), args=message, queue=queue_for(spec.kind), countdown=countdown)

    transaction.on_commit(send, robust=True)
