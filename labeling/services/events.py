"""Domain events: the one place a service announces that something happened in a project.

A service calls ``publish(Event.X, payload, project=...)`` inside its transaction. Two things follow:

- the webhook outbox: one ``WebhookDelivery`` row per active subscription to that event is written
  *in the same transaction* (rolled back with the change, committed with it), and its delivery is
  enqueued after the commit. A lost message (broker down at commit time, a worker killed) leaves a
  pending row that the beat job ``webhooks_reconcile`` sends again, so every committed event reaches
  every subscriber at least once (services/webhooks.py delivers and signs);
- listeners in ``LISTENERS`` run after the commit, so none ever sees a change that was rolled back.

The label path pays nothing for a project without webhooks: ``publish`` reads the project's
``webhooks_active`` flag from the row the service already holds (no query) when it is given a
``Project`` - pass one only when it was read in the same transaction, or a subscription added since
is missed. Other callers pass the project's id, and one indexed query decides.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.utils import timezone

from labeling.models import Project, WebhookDelivery, WebhookSubscription
from labeling.services.dispatch import TaskName, enqueue

logger = logging.getLogger(__name__)


class Event(enum.StrEnum):
    # {project_id, count, document_ids}: one per ingest call or import chunk, never one per document
    DOCUMENTS_INGESTED = "documents.ingested"
    ANNOTATION_CREATED = "annotation.created"  # {annotation_id, document_id, project_id, label, annotator_id}
    ANNOTATION_CHANGED = "annotation.changed"  # the same, plus previous_label
    # {review_item_id, decision_id, document_id, label, action, replaced_label, reviewer_id}
    REVIEW_DECIDED = "review.decided"
    # {import_job_id, status, rows_total, rows_imported, rows_duplicate, rows_rejected, error}
    IMPORT_FINISHED = "import.finished"
    TRAINING_FINISHED = "training.finished"  # {run_id, status, promoted, model_version_id, reason, error}
    MODEL_PROMOTED = "model.promoted"  # {model_version_id, version, previous_champion_id}
    MODEL_ROLLED_BACK = "model.rolled_back"  # {model_version_id, version, rolled_back_id, rolled_back_version}


#: Not an event a subscription chooses: ``POST .../webhooks/{id}/ping`` sends it to one receiver.
PING = "ping"


Listener = Callable[[Event, dict[str, Any]], None]


LISTENERS: list[Listener] = []


def publish(event: Event, payload: dict[str, Any], *, project: Project | int) -> list[int]:
    """Record ``event`` for the project's webhooks and tell the listeners once the transaction commits.

    Call it inside the transaction that makes the change. Returns the ids of the deliveries written.
    ``robust``: a failing listener is logged and does not undo the committed change or stop the others.
    """
    logger.debug("event %s %s", event, payload)
    deliveries = _outbox_write(event, payload, project=project)
    for listener in LISTENERS:
        transaction.on_commit(lambda listener=listener: listener(event, dict(payload)), robust=True)
    return deliveries


def _outbox_write(event: Event | str, payload: dict[str, Any], *, project: Project | int) -> list[int]:
    if isinstance(project, Project):
        if not project.webhooks_active:
            return []
        project_id = project.pk
    else:
        project_id = project
    subscriptions = WebhookSubscription.objects.filter(project_id=project_id, active=True)
    wanted = [
        (pk, retry_at) for pk, events, retry_at in subscriptions.values_list("pk", "events", "retry_at")
        if str(event) in events
    ]
    now = timezone.now()
    failing = {pk: retry_at for pk, retry_at in wanted if retry_at is not None and retry_at > now}
    return deliveries_create(
        event=str(event), payload=payload, subscription_ids=[pk for pk, _ in wanted], wait_until=failing
    )


def deliveries_create(
    *, event: str, payload: dict[str, Any], subscription_ids: list[int], wait_until: dict[int, Any] | None = None
) -> list[int]:
    """One pending delivery per subscription, each with its own idempotency id; sent after commit.

    ``wait_until``: subscriptions whose receiver is failing, and when its next probe is due. Their
    delivery is due then and gets no message now: it waits in the outbox for the probe's outcome (a
    success sends what waits, ``services.webhooks``; beat sends whatever is left overdue).
    """
    if not subscription_ids:
        return []
    now = timezone.now()
    waits = wait_until or {}
    rows = WebhookDelivery.objects.bulk_create([
        WebhookDelivery(subscription_id=pk, event_id=uuid.uuid4(), event=event, payload=payload,
                        created_at=now, next_attempt_at=waits.get(pk, now))
        for pk in subscription_ids
    ])
    ids = [row.pk for row in rows if row.subscription_id not in waits]
    for pk in ids:
        enqueue(TaskName.WEBHOOK_DELIVER, args=(pk,))
    return [row.pk for row in rows]
