"""One delivery attempt at a time, in this process, against a real receiver: states, backoff, the cap, beat.

The worker path (the same function in a Celery process) is tests/workers/test_webhooks.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.models import DeliveryState, WebhookDelivery
from labeling.services import webhooks
from labeling.services.events import deliveries_create
from labeling.services.projects import project_create
from tests.support.webhook_receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_TIMEOUT_S = 2
    settings.WEBHOOK_BACKOFF_BASE_S = 2
    settings.WEBHOOK_BACKOFF_MAX_S = 60
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    server = Receiver().start()
    yield server
    server.stop()


@pytest.fixture
def delivery(receiver) -> WebhookDelivery:
    project = project_create(name="p", labels=["a", "b"])
    webhook = webhooks.webhook_create(project=project, url=receiver.url, events=["annotation.created"])
    (pk,) = deliveries_create(event="annotation.created", payload={"project_id": project.pk, "label": "a"},
                              subscription_ids=[webhook.pk])
    return WebhookDelivery.objects.get(pk=pk)


def test_backoff_doubles_up_to_the_cap_with_a_little_jitter(settings):
    settings.WEBHOOK_BACKOFF_BASE_S, settings.WEBHOOK_BACKOFF_MAX_S = 2, 60
    waits = [webhooks.backoff_s(n) for n in range(1, 9)]
    for n, wait in enumerate(waits, start=1):
        base = min(2 * 2 ** (n - 1), 60)
        assert base <= wait <= base * 1.1


def test_a_refusing_receiver_is_retried_then_failed_and_the_log_says_why(receiver, delivery,
                                                                      django_capture_on_commit_callbacks):
    receiver.status = 503
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert webhooks.delivery_attempt(delivery_id=delivery.pk) == DeliveryState.PENDING
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code) == (1, 503)
    assert delivery.last_error.startswith("HTTP 503: receiver says no")
    assert delivery.next_attempt_at > timezone.now() and len(sent) == 1  # the next attempt, with its countdown
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) is None  # not due yet: a duplicate does nothing

    for _ in (2, 3):
        WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        webhooks.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == (DeliveryState.FAILED, 3)  # WEBHOOK_MAX_ATTEMPTS
    assert len(receiver.received()) == 3 and len(set(receiver.event_ids())) == 1

    webhooks.delivery_redeliver(delivery=delivery)
    receiver.status = 200
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == DeliveryState.DELIVERED
    delivery.refresh_from_db()
    assert (delivery.attempts, delivery.last_status_code, delivery.last_error) == (1, 200, "")
    assert receiver.event_ids() == [str(delivery.event_id)] * 4
    body = json.loads(receiver.received()[-1].body)
    assert body["data"] == {"project_id": delivery.payload["project_id"], "label": "a"}


def test_a_claimed_delivery_is_not_sent_twice_and_not_redelivered_in_flight(receiver, delivery):
    WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_until=timezone.now() + timedelta(seconds=30))
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) is None
    with pytest.raises(webhooks.DeliveryInFlightError):
        webhooks.delivery_redeliver(delivery=delivery)
    assert receiver.received() == []


def test_beat_resends_only_overdue_unclaimed_deliveries(receiver, delivery, settings,
                                                        django_capture_on_commit_callbacks):
    settings.WEBHOOK_RECONCILE_SECONDS = 30
    assert webhooks.webhooks_reconcile() == {"webhook_deliveries_resent": 0}  # just written: its message is on its way
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=False) as sent:
        assert webhooks.webhooks_reconcile() == {"webhook_deliveries_resent": 1}
    assert len(sent) == 1
    WebhookDelivery.objects.filter(pk=delivery.pk).update(claimed_until=timezone.now() + timedelta(seconds=30))
    assert webhooks.webhooks_reconcile() == {"webhook_deliveries_resent": 0}


def test_a_url_that_turned_private_fails_the_attempt_without_a_request(receiver, delivery, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    webhooks.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert "private or reserved" in delivery.last_error and delivery.last_status_code is None
    assert receiver.received() == []


def test_a_rolled_back_label_leaves_no_delivery_and_a_committed_one_does(receiver):
    from django.db import transaction

    from labeling.services.annotations import annotation_submit
    from tests.factories import AssignmentFactory, DocumentFactory

    lease = AssignmentFactory(document=DocumentFactory())
    project = lease.document.project
    webhooks.webhook_create(project=project, url=receiver.url, events=["annotation.created"])
    lease.document.project.refresh_from_db()
    with pytest.raises(RuntimeError), transaction.atomic():
        annotation_submit(assignment=lease, user=lease.annotator, label="fresh")
        raise RuntimeError("the caller's transaction fails after the label")
    assert not WebhookDelivery.objects.exists()
    annotation, _ = annotation_submit(assignment=lease, user=lease.annotator, label="fresh")
    assert WebhookDelivery.objects.get().payload["annotation_id"] == annotation.pk


def test_a_failing_receiver_holds_back_its_other_deliveries_until_the_next_try(receiver, delivery):
    receiver.stop()
    others = deliveries_create(event="annotation.created", payload={"n": 2},
                               subscription_ids=[delivery.subscription_id] * 3)
    webhooks.delivery_attempt(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    held = WebhookDelivery.objects.filter(pk__in=others)
    assert {d.next_attempt_at for d in held} == {delivery.next_attempt_at}
    assert {d.attempts for d in held} == {0}  # waiting spends none of their attempts
    assert all(webhooks.delivery_attempt(delivery_id=pk) is None for pk in others)  # not due: no request


def test_while_a_receiver_fails_new_events_wait_for_its_probe_and_its_recovery_sends_them(
    receiver, delivery, django_capture_on_commit_callbacks, settings
):
    """An outage costs one probe per backoff step: a new event neither gets a message nor an attempt of
    its own while the receiver is failing; the first success clears that and sends what waited."""
    from labeling.models import WebhookSubscription
    from labeling.services.events import Event, publish

    settings.WEBHOOK_MAX_ATTEMPTS = 10
    receiver.status = 503
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == DeliveryState.PENDING
    delivery.refresh_from_db()
    subscription = WebhookSubscription.objects.get(pk=delivery.subscription_id)
    assert subscription.retry_at == delivery.next_attempt_at  # the probe's time
    project_id = subscription.project_id
    with django_capture_on_commit_callbacks(execute=False) as sent:
        (waiting,) = publish(Event.ANNOTATION_CREATED, {"project_id": project_id, "label": "b"}, project=project_id)
    assert sent == []  # no message: it waits for the probe
    assert WebhookDelivery.objects.get(pk=waiting).next_attempt_at == subscription.retry_at

    receiver.status = 200
    WebhookDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())  # the probe is due
    assert webhooks.delivery_attempt(delivery_id=delivery.pk) == DeliveryState.DELIVERED
    subscription.refresh_from_db()
    assert subscription.retry_at is None
    assert WebhookDelivery.objects.get(pk=waiting).next_attempt_at <= timezone.now()  # sent at once
    assert webhooks.delivery_attempt(delivery_id=waiting) == DeliveryState.DELIVERED
