"""Webhooks API: subscriptions, validation (hostile input stores nothing), and the outbox each event writes.

Delivery itself (a real worker POSTing to a real receiver) is tests/workers/test_webhooks.py.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from labeling.models import (
    ModelStatus,
    Project,
    ReviewItem,
    ReviewReason,
    RunStatus,
    WebhookDelivery,
    WebhookSubscription,
)
from labeling.services.documents import document_bulk_create
from labeling.services.projects import project_create
from labeling.services.review import review_decide
from labeling.services.training.promotion import model_version_promote, model_version_rollback
from labeling.services.training.runs import training_run_fail
from tests import factories as f

pytestmark = pytest.mark.django_db

ALL = ["annotation.created", "annotation.changed", "documents.ingested", "review.decided",
       "import.finished", "training.finished", "model.promoted", "model.rolled_back"]


@pytest.fixture(autouse=True)
def _private_receivers(settings) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receivers here are 127.0.0.1


def url(project: Project, tail: str = "") -> str:
    return f"/api/v1/projects/{project.pk}/webhooks/{tail}"


def subscribe(client, project: Project, events: list[str]) -> dict:
    response = client.post(url(project), {"url": "http://127.0.0.1:9/hook", "events": events}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def outbox(project: Project) -> list[tuple[str, dict]]:
    return [(d.event, d.payload) for d in WebhookDelivery.objects.filter(subscription__project=project).order_by("id")]


def test_a_manager_subscribes_and_sees_the_generated_secret(manager_client, project):
    body = subscribe(manager_client, project, ["annotation.changed", "annotation.created", "annotation.created"])
    assert body["events"] == ["annotation.created", "annotation.changed"]
    assert len(body["secret"]) == 64 and int(body["secret"], 16) >= 0
    assert manager_client.get(url(project)).json() == [body]
    project.refresh_from_db()
    assert project.webhooks_active

    changed = manager_client.patch(url(project, str(body["id"])), {"rotate_secret": True, "active": False},
                                   format="json").json()
    assert changed["secret"] != body["secret"] and changed["active"] is False
    project.refresh_from_db()
    assert not project.webhooks_active  # no active subscription: the label path skips the outbox again
    assert manager_client.delete(url(project, str(body["id"]))).status_code == 204
    assert not WebhookSubscription.objects.exists()


@pytest.mark.parametrize(
    "body,field",
    [
        ({"url": "ftp://example.com/x", "events": ["annotation.created"]}, "url"),
        ({"url": "javascript:alert(1)", "events": ["annotation.created"]}, "url"),
        ({"url": "http://" + "a" * 2000 + ".com/", "events": ["annotation.created"]}, "url"),
        ({"url": "http://user:pw@127.0.0.1/x", "events": ["annotation.created"]}, "url"),
        ({"url": "http://127.0.0.1:99999/x", "events": ["annotation.created"]}, "url"),
        ({"url": ["http://127.0.0.1/"], "events": ["annotation.created"]}, "url"),
        ({"events": ["annotation.created"]}, "url"),
        ({"url": "http://127.0.0.1:9/", "events": []}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": ["annotation.deleted"]}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": ["ping"]}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": "annotation.created"}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": [{"$gt": ""}]}, "events"),
        ({"url": "http://127.0.0.1:9/"}, "events"),
        ({"url": "http://127.0.0.1:9/", "events": ["annotation.created"], "description": "x" * 201}, "description"),
        ({"url": "http://127.0.0.1:9/", "events": ["annotation.created"], "secret": "mine"}, "secret"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(manager_client, project, body, field):
    response = manager_client.post(url(project), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert not WebhookSubscription.objects.exists()
    project.refresh_from_db()
    assert not project.webhooks_active


@pytest.mark.parametrize("target", ["http://127.0.0.1:8080/x", "http://10.1.2.3/x", "http://169.254.169.254/latest",
                                    "http://[::1]/x", "http://localhost/x"])
def test_private_addresses_are_refused_by_default(manager_client, project, settings, target):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    response = manager_client.post(url(project), {"url": target, "events": ["annotation.created"]}, format="json")
    assert response.status_code == 400
    assert "private or reserved" in response.json()["error"]["fields"]["url"]
    assert not WebhookSubscription.objects.exists()


def test_a_bad_patch_changes_nothing(manager_client, project):
    body = subscribe(manager_client, project, ["annotation.created"])
    response = manager_client.patch(url(project, str(body["id"])), {"events": ["nope"], "url": "http://127.0.0.1:7/"},
                                    format="json")
    assert response.status_code == 400 and "events" in response.json()["error"]["fields"]
    assert WebhookSubscription.objects.get().url == "http://127.0.0.1:9/hook"


def test_another_projects_webhook_is_404(manager_client, project):
    other = project_create(name="other", labels=["a", "b"])
    foreign = WebhookSubscription.objects.create(project=other, url="http://127.0.0.1:9/", events=ALL, secret="s")
    delivery = WebhookDelivery.objects.create(subscription=foreign, event_id="0" * 32, event="ping")
    for path in (str(foreign.pk), f"{foreign.pk}/deliveries/"):
        assert manager_client.get(url(project, path)).status_code == 404
    assert manager_client.post(url(project, f"{foreign.pk}/ping")).status_code == 404
    assert manager_client.post(url(project, f"{foreign.pk}/deliveries/{delivery.pk}/redeliver")).status_code == 404
    assert WebhookDelivery.objects.count() == 1


def test_the_schema_lists_the_webhook_operations(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/v1/schema/").content)
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert operations >= {"webhooks_list", "webhooks_create", "webhooks_retrieve", "webhooks_update",
                          "webhooks_destroy", "webhooks_ping", "webhooks_deliveries", "webhooks_redeliver"}


def _label(client, project: Project) -> int:
    item = client.post(f"/api/v1/projects/{project.pk}/queue/next").json()
    response = client.post(f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": "fresh"},
                           format="json")
    assert response.status_code == 201, response.content
    return int(response.json()["id"])


def test_a_label_in_a_project_without_webhooks_reads_no_webhook_table(annotator_client, project):
    f.DocumentFactory.create_batch(3, project=project)
    with CaptureQueriesContext(connection) as ctx:
        _label(annotator_client, project)
    assert not [q for q in ctx.captured_queries if "labeling_webhook" in q["sql"]]
    assert not WebhookDelivery.objects.exists()


def test_a_label_writes_one_outbox_row_per_subscription_in_its_transaction(manager_client, annotator_client,
                                                                          project):
    f.DocumentFactory.create_batch(3, project=project)
    subscribe(manager_client, project, ["annotation.created"])
    subscribe(manager_client, project, ["annotation.created", "annotation.changed"])
    subscribe(manager_client, project, ["review.decided"])  # not this event: no row
    annotation_id = _label(annotator_client, project)
    rows = outbox(project)
    assert [event for event, _ in rows] == ["annotation.created"] * 2
    assert rows[0][1]["annotation_id"] == annotation_id and rows[0][1]["label"] == "fresh"
    ids = set(WebhookDelivery.objects.values_list("event_id", flat=True))
    assert len(ids) == 2  # one idempotency id per (event, receiver)

    patched = annotator_client.patch(f"/api/v1/annotations/{annotation_id}", {"label": "rotten"}, format="json")
    assert patched.status_code == 200
    assert outbox(project)[-1] == ("annotation.changed", {
        **rows[0][1], "label": "rotten", "previous_label": "fresh"})


def test_each_service_publishes_its_event(manager_client, project, manager):
    subscribe(manager_client, project, ALL)

    document_bulk_create(project=project, items=[{"text": f"text {i}"} for i in range(5)])
    event, data = outbox(project)[-1]
    assert event == "documents.ingested" and data["count"] == 5 and len(data["document_ids"]) == 5

    doc = f.DocumentFactory(project=project)
    item = ReviewItem.objects.create(project=project, document=doc, reason=ReviewReason.AUDIT)
    review_decide(item=item, reviewer=manager, label="rotten")
    event, data = outbox(project)[-1]
    assert event == "review.decided" and data["document_id"] == doc.pk and data["label"] == "rotten"

    first = f.ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION, promoted_at=timezone.now())
    second = f.ModelVersionFactory(project=project, version=2, status=ModelStatus.CANDIDATE, artifact_path="v2")
    model_version_promote(model_version=second)
    assert outbox(project)[-1] == ("model.promoted", {"project_id": project.pk, "model_version_id": second.pk,
                                                      "version": 2, "previous_champion_id": first.pk})
    model_version_rollback(project=project)
    event, data = outbox(project)[-1]
    assert event == "model.rolled_back" and data["model_version_id"] == first.pk and data["rolled_back_id"] == second.pk

    run = f.TrainingRunFactory(project=project, status=RunStatus.RUNNING)
    training_run_fail(run.pk, "out of memory")
    event, data = outbox(project)[-1]
    assert event == "training.finished" and data["status"] == "failed" and "out of memory" in data["error"]
    training_run_fail(run.pk, "again")  # already failed: no second event
    assert [e for e, _ in outbox(project)].count("training.finished") == 1
