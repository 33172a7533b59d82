"""Enqueue background work by task name, after the current transaction commits.

Services never import ``workers`` (the dependency points the other way); they name the task and
the kind of queue. Routing a kind to a concrete queue (``scoring`` / ``training`` / ``gpu``) is a
setting, so a GPU host takes the work by configuration, not code edits.
"""

from __future__ import annotations

import enum
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction


class TaskName(enum.StrEnum):
    SCORE_PENDING = "alabel.scoring.score_pending"      # (project_id,) coalesced scoring of new documents
    RESCORE_POOL = "alabel.scoring.rescore_pool"        # (run_id, model_version_id) chunked, resumable
    RECONCILE = "alabel.scoring.reconcile"              # () beat: find unscored pool documents
    ATTRIBUTE = "alabel.scoring.attribute"              # (prediction_id,) token highlights
    TRAIN = "alabel.training.train"                     # (run_id,)
    CHECK_RETRAIN = "alabel.training.check_retrain"     # (project_id,) debounced threshold check
    SCHEDULED_RETRAIN = "alabel.training.scheduled"     # () beat, nightly
    IMPORT_FILE = "alabel.imports.import_file"          # (import_job_id,)


class QueueKind(enum.StrEnum):
    SCORING = "scoring"
    TRAINING = "training"


def queue_for(kind: QueueKind) -> str:
    return settings.CELERY_ROUTE_SCORING if kind is QueueKind.SCORING else settings.CELERY_ROUTE_TRAINING


def enqueue(
    name: TaskName, *, args: tuple[Any, ...] = (), kind: QueueKind = QueueKind.SCORING,
    countdown: float | None = None, coalesce_s: float | None = None,
) -> None:
    """Send ``name`` once the surrounding transaction commits (at once outside one).

    ``coalesce_s``: send at most one message per (name, args) in that many seconds (a key in the
    cache: per process, or across replicas with CACHE_URL). Use it with a ``countdown`` longer than
    the window, so the message that was sent runs after every commit it stands in for.

    A broker outage is logged, not raised: the caller's data is already committed, and the beat
    reconciliation task finds whatever a lost message left undone.
    """

    def send() -> None:
        if coalesce_s is not None and not cache.add(f"alabel:enqueue:{name}:{args}", 1, timeout=coalesce_s):
            return  # a message sent moments ago has not run yet and will see this commit
        current_app.send_task(str(name), args=args, queue=queue_for(kind), countdown=countdown)

    transaction.on_commit(send, robust=True)
