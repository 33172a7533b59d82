"""Webhook deliveries through a real Celery worker to a real HTTP receiver (tests/support/webhook_receiver.py).

Real PostgreSQL (committed rows), real Redis, a real ``celery worker`` on the ``webhooks`` queue,
labels given through the real API. Waiting uses generous timeouts against hangs; nothing asserts a speed.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from rest_framework.test import APIClient

from labeling import roles
from labeling.models import DeliveryState, Project, WebhookDelivery
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from tests import factories as f
from tests.support.celery_worker import use_broker, wait_until
from tests.support.webhook_receiver import Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "API.md"
# Short backoff so a retry comes within seconds; private addresses allowed (the receiver is 127.0.0.1).
WORKER_ENV = {"WEBHOOK_ALLOW_PRIVATE": "true", "WEBHOOK_BACKOFF_BASE_S": "0.3", "WEBHOOK_BACKOFF_MAX_S": "1",
              "WEBHOOK_TIMEOUT_S": "3"}


def documented_verify() -> Any:
    """The receiver's verification recipe, exactly as docs/API.md prints it."""
    text = DOCS.read_text()
    block = re.search(r"<!-- webhook-verify -->\s*```python\n(.*?)```", text, re.S)
    assert block is not None, "docs/API.md lost its webhook verification recipe"
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)  # noqa: S102 - our own documentation, the point of the test
    return namespace["verify"]


@pytest.fixture
def team(db, settings) -> dict[str, Any]:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    project = project_create(name="hooks", labels=["fresh", "rotten"], holdout_fraction=0.0,
                             holdout_interleave=0.0)
    users = {}
    for name, role in (("mgr", roles.MANAGER), ("ann", roles.ANNOTATOR)):
        users[name] = f.UserFactory(username=name)
        membership_ensure(project=project, user=users[name], role=role)
    f.DocumentFactory.create_batch(12, project=project)
    clients = {}
    for name, user in users.items():
        clients[name] = APIClient()
        clients[name].force_authenticate(user)
    return {"project": project, "clients": clients}


def subscribe(team: dict[str, Any], receiver: Receiver, events: list[str]) -> dict[str, Any]:
    project: Project = team["project"]
    response = team["clients"]["mgr"].post(f"/api/v1/projects/{project.pk}/webhooks/",
                                          {"url": receiver.url, "events": events}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def label(team: dict[str, Any], answer: str = "fresh") -> int:
    client, project = team["clients"]["ann"], team["project"]
    item = client.post(f"/api/v1/projects/{project.pk}/queue/next").json()
    response = client.post(f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": answer},
                           format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def log(team: dict[str, Any], webhook: dict[str, Any]) -> list[dict[str, Any]]:
    url = f"/api/v1/projects/{team['project'].pk}/webhooks/{webhook['id']}/deliveries/"
    return list(team["clients"]["mgr"].get(url).json())


def states() -> str:
    return str(list(WebhookDelivery.objects.values_list("event", "state", "attempts", "last_error")))


def test_a_label_is_delivered_signed_and_the_documented_recipe_verifies_it(team, celery_worker_factory):
    receiver = Receiver().start()
    try:
        webhook = subscribe(team, receiver, ["annotation.created"])
        celery_worker_factory(queues="webhooks", env=WORKER_ENV)
        annotation_id = label(team)
        wait_until(lambda: receiver.received("annotation.created"), timeout=60, what=states)

        got = receiver.received("annotation.created")[0]
        body = json.loads(got.body)
        assert body["event"] == "annotation.created" and body["data"]["annotation_id"] == annotation_id
        assert body["id"] == got.headers["X-Alabel-Delivery"]
        verify = documented_verify()
        assert verify(webhook["secret"], got.body, got.headers["X-Alabel-Signature"])
        assert not verify("another secret", got.body, got.headers["X-Alabel-Signature"])
        assert not verify(webhook["secret"], got.body + b" ", got.headers["X-Alabel-Signature"])

        row = wait_until(lambda: [d for d in log(team, webhook) if d["state"] == "delivered"], timeout=30,
                         what=states)[0]
        assert (row["event_id"], row["last_status_code"], row["attempts"]) == (body["id"], 200, 1)
        assert row["delivered_after_ms"] is not None and row["last_error"] == ""

        # ping: through the workers, signed like any delivery
        base = f"/api/v1/projects/{team['project'].pk}/webhooks/{webhook['id']}"
        assert team["clients"]["mgr"].post(f"{base}/ping").status_code == 202
        ping = wait_until(lambda: receiver.received("ping"), timeout=60, what=states)[0]
        assert verify(webhook["secret"], ping.body, ping.headers["X-Alabel-Signature"])

        # redelivery by hand: the same event id again
        redo = team["clients"]["mgr"].post(f"{base}/deliveries/{row['id']}/redeliver")
        assert redo.status_code == 202 and redo.json()["event_id"] == body["id"]
        wait_until(lambda: len(receiver.received("annotation.created")) == 2, timeout=60, what=states)
        assert receiver.event_ids("annotation.created") == [body["id"], body["id"]]
    finally:
        receiver.stop()


def test_a_receiver_that_is_down_gets_every_event_once_it_returns(team, celery_worker_factory):
    receiver = Receiver().start()
    receiver.stop()  # down: its port refuses connections
    webhook = subscribe(team, receiver, ["annotation.created"])
    # beat: the deliveries held back behind the failing probe are sent by the reconciliation
    celery_worker_factory(queues="webhooks", env={**WORKER_ENV, "WEBHOOK_RECONCILE_SECONDS": "1"}, beat=True)
    annotations = {label(team) for _ in range(4)}

    def retried() -> bool:
        rows = list(WebhookDelivery.objects.all())
        # the probe is retried; events that came after the receiver failed wait for it, untried
        return (len(rows) == 4 and all(r.state == DeliveryState.PENDING for r in rows)
                and max(r.attempts for r in rows) >= 3)

    wait_until(retried, timeout=90, what=states)
    tried = [d for d in log(team, webhook) if d["attempts"]]
    assert tried and all("Connection" in d["last_error"] and d["last_status_code"] is None for d in tried)
    receiver.start()  # back, on the same port
    try:
        wait_until(lambda: not WebhookDelivery.objects.exclude(state=DeliveryState.DELIVERED).exists(),
                   timeout=90, what=states)
        ids_per_annotation: dict[int, set[str]] = defaultdict(set)
        for got in receiver.received("annotation.created"):
            ids_per_annotation[json.loads(got.body)["data"]["annotation_id"]].add(got.headers["X-Alabel-Delivery"])
        # every event arrived; a repeat (at least once) would carry the same idempotency id
        assert set(ids_per_annotation) == annotations
        assert all(len(ids) == 1 for ids in ids_per_annotation.values())
        assert {str(i) for ids in ids_per_annotation.values() for i in ids} == {
            str(i) for i in WebhookDelivery.objects.values_list("event_id", flat=True)
        }
    finally:
        receiver.stop()


def test_a_receiver_that_does_not_answer_never_holds_up_labeling(team, celery_worker_factory):
    receiver = Receiver().start()
    receiver.hold()  # it accepts the connection and then says nothing until released
    try:
        subscribe(team, receiver, ["annotation.created"])
        celery_worker_factory(queues="webhooks", env={**WORKER_ENV, "WEBHOOK_TIMEOUT_S": "120"})
        first = label(team)
        wait_until(lambda: receiver.received(), timeout=60, what=states)  # the worker is now waiting on it
        more = [label(team) for _ in range(5)]  # labeling goes on while the delivery hangs
        assert len(set(more)) == 5 and not WebhookDelivery.objects.filter(state=DeliveryState.DELIVERED).exists()
        receiver.release()
        wait_until(lambda: WebhookDelivery.objects.filter(state=DeliveryState.DELIVERED).count() == 6, timeout=90,
                   what=states)
        delivered = {json.loads(r.body)["data"]["annotation_id"] for r in receiver.received()}
        assert delivered == {first, *more}
    finally:
        receiver.stop()


def test_an_event_committed_while_the_broker_is_down_is_delivered_by_beat(team, celery_worker_factory,
                                                                          redis_server):
    receiver = Receiver().start()
    try:
        subscribe(team, receiver, ["annotation.created"])
        with use_broker(redis_server.url):
            celery_worker_factory(queues="webhooks", env={**WORKER_ENV, "WEBHOOK_RECONCILE_SECONDS": "1"},
                                  beat=True, broker_url=redis_server.url)
            redis_server.stop()  # the delivery message of the next label is lost; the outbox row is not
            annotation_id = label(team)
            assert WebhookDelivery.objects.filter(state=DeliveryState.PENDING).count() == 1
            redis_server.start()
            wait_until(lambda: receiver.received("annotation.created"), timeout=120, what=states)
        assert json.loads(receiver.received()[0].body)["data"]["annotation_id"] == annotation_id
    finally:
        receiver.stop()
