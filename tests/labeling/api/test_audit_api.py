"""The audit log over HTTP: a project's managers read and export its events, staff read the whole site's;
filters narrow it, bad filter values are a 400 naming the parameter, and the Django admin only reads."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from labeling import roles
from labeling.models import AuditAction, AuditEvent
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create, project_update_policy
from labeling.services.tokens import token_create
from tests import factories as f

pytestmark = pytest.mark.django_db


def audit_url(project: Any) -> str:
    return f"/api/v1/projects/{project.pk}/audit/"


def body(response: Any) -> bytes:
    return b"".join(response.streaming_content)


@pytest.fixture
def history(project, manager_client, manager, annotator, admin_user) -> dict[str, Any]:
    """A few events of this project (and one of another project, and a token event of none)."""
    project_update_policy(project=project, by=manager, retrain_after=7)
    project_update_policy(project=project, by=admin_user, lease_minutes=30)
    other = project_create(name="other", labels=["x", "y"], by=admin_user)
    membership_ensure(project=other, user=annotator, role=roles.ANNOTATOR, by=admin_user)
    token_create(user=annotator, client="laptop", by=admin_user)
    return {"other": other}


def test_a_manager_reads_the_projects_events_newest_first_a_page_at_a_time(manager_client, project, history):
    first = manager_client.get(audit_url(project), {"page_size": 2})
    assert first.status_code == 200, first.content
    page = first.json()
    assert [e["action"] for e in page["results"]] == ["project.updated", "project.updated"]
    assert page["results"][0]["data"] == {"lease_minutes": {"old": 10, "new": 30}}
    assert page["results"][0]["actor_name"] == "boss" and page["results"][1]["actor_name"] == "mgr"
    seen = [e["id"] for e in page["results"]]
    url = page["next"]
    while url:
        page = manager_client.get(url).json()
        seen += [e["id"] for e in page["results"]]
        url = page["next"]
    mine = list(
        AuditEvent.objects.filter(project_id=project.pk).order_by("-created_at", "-id").values_list("id", flat=True)
    )
    assert seen == mine  # every event of this project once, none of the other project's or the site's
    assert {e.project_id for e in AuditEvent.objects.filter(pk__in=seen)} == {project.pk}


def test_filters_by_action_actor_time_and_target(manager_client, manager, project, history, annotator):
    def ids(**params: Any) -> list[int]:
        response = manager_client.get(audit_url(project), params)
        assert response.status_code == 200, response.content
        return [e["id"] for e in response.json()["results"]]

    updates = AuditEvent.objects.filter(project_id=project.pk, action=AuditAction.PROJECT_UPDATED)
    assert sorted(ids(action="project.updated")) == sorted(updates.values_list("id", flat=True))
    by_manager = updates.get(actor_name="mgr")
    assert ids(actor="mgr") == [by_manager.pk]
    assert ids(actor_id=manager.pk) == [by_manager.pk]
    added = AuditEvent.objects.get(project_id=project.pk, action="member.added", target_id=str(annotator.pk))
    assert ids(target_type="user", target_id=str(annotator.pk)) == [added.pk]
    later = timezone.now() + timedelta(hours=1)
    assert ids(since=later.isoformat()) == []
    assert len(ids(until=later.isoformat())) == AuditEvent.objects.filter(project_id=project.pk).count()
    assert ids(since=by_manager.created_at.isoformat(), action="project.updated", actor="mgr") == [by_manager.pk]


@pytest.mark.parametrize(
    "params,field",
    [
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45T00:00:00Z"}, "until"),
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "until"),
        ({"action": "project.hacked"}, "action"),
        ({"actor_id": "1e3"}, "actor_id"),
        ({"actor_id": str(10**20)}, "actor_id"),
        ({"actor": "x" * 151}, "actor"),
        ({"target_id": "a\x00b"}, "target_id"),
        ({"format": "xml"}, "format"),
        ({"page_size": "0"}, "page_size"),
        ({"cursor": "not-a-cursor"}, "cursor"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter_and_store_nothing(manager_client, project, history, params, field):
    before = AuditEvent.objects.count()
    response = manager_client.get(audit_url(project), params)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert AuditEvent.objects.count() == before


def test_csv_export_is_every_matching_event_and_spreadsheet_safe(manager_client, manager, project, history):
    project_update_policy(project=project, by=manager, description="=HYPERLINK(\"http://evil\")")
    response = manager_client.get(audit_url(project), {"format": "csv", "action": "project.updated"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f'filename="project-{project.pk}-audit.csv"' in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(body(response).decode())))
    assert len(rows) == AuditEvent.objects.filter(project_id=project.pk, action="project.updated").count() == 3
    newest = rows[0]
    assert newest["actor_name"] == "mgr" and newest["project_name"] == "reviews"
    assert json.loads(newest["data"])["description"]["new"] == '=HYPERLINK("http://evil")'  # JSON cell starts with {
    hostile = project_create(name="=cmd|' /C calc'!A0", labels=["a", "b"], by=None)
    membership_ensure(project=hostile, user=manager, role=roles.MANAGER)
    cells = list(csv.DictReader(io.StringIO(body(manager_client.get(audit_url(hostile), {"format": "csv"})).decode())))
    assert {row["project_name"] for row in cells} == {"'=cmd|' /C calc'!A0"}


def test_jsonl_export(manager_client, project, history):
    response = manager_client.get(audit_url(project), {"format": "jsonl"})
    assert response.status_code == 200 and response["Content-Type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in body(response).decode().splitlines()]
    assert [e["id"] for e in lines] == list(
        AuditEvent.objects.filter(project_id=project.pk).order_by("-created_at", "-id").values_list("id", flat=True)
    )
    assert set(lines[0]) == {
        "id", "created_at", "action", "actor_id", "actor_name", "project_id", "project_name", "target_type",
        "target_id", "target_repr", "data",
    }


def test_staff_read_the_whole_site_and_managers_do_not(admin_client, manager_client, project, history):
    everything = admin_client.get("/api/v1/audit/", {"page_size": 500}).json()["results"]
    assert len(everything) == AuditEvent.objects.count()
    tokens = admin_client.get("/api/v1/audit/", {"action": "token.created", "target_id": "999999"}).json()
    assert tokens["results"] == []
    laptop = [e for e in everything if e["action"] == "token.created" and e["data"].get("client") == "laptop"]
    assert len(laptop) == 1 and laptop[0]["project_id"] is None and laptop[0]["actor_name"] == "boss"
    other = history["other"]
    scoped = admin_client.get("/api/v1/audit/", {"project": other.pk}).json()["results"]
    assert {e["project_name"] for e in scoped} == {"other"} and len(scoped) == 2
    assert manager_client.get("/api/v1/audit/").status_code == 403
    bad = admin_client.get("/api/v1/audit/", {"project": "seven"})
    assert bad.status_code == 400 and "project" in bad.json()["error"]["fields"]


def test_a_deleted_projects_history_stays_readable_by_staff(admin_client, admin_user, project, history):
    from labeling.services.projects import project_delete

    project_id = project.pk
    count = AuditEvent.objects.filter(project_id=project_id).count()
    project_delete(project=project, by=admin_user)
    events = admin_client.get("/api/v1/audit/", {"project": project_id, "page_size": 500}).json()["results"]
    assert len(events) == count + 1 and events[0]["action"] == "project.deleted"
    assert admin_client.get(f"/api/v1/projects/{project_id}/audit/").status_code == 404


def test_a_label_export_is_recorded_with_its_format_and_rows(manager_client, manager, project, docs, annotator):
    f.AnnotationFactory(document=docs[0], annotator=annotator, label="fresh")
    response = manager_client.get(f"/api/v1/projects/{project.pk}/export", {"format": "csv"})
    assert response.status_code == 200
    body(response)
    export = AuditEvent.objects.get(action=AuditAction.EXPORT_DOWNLOADED)
    assert (export.actor_name, export.project_id, export.data) == ("mgr", project.pk, {"format": "csv", "rows": 1})


def test_the_api_records_who_asked_for_a_retrain(manager_client, project):
    manager_client.post(f"/api/v1/projects/{project.pk}/training-runs/")
    event = AuditEvent.objects.get(action=AuditAction.RETRAIN_REQUESTED)
    assert event.actor_name == "mgr" and event.project_id == project.pk


def test_the_members_changes_endpoint_reads_the_audit_log(manager_client, manager, project, annotator):
    changes = manager_client.get(f"/api/v1/projects/{project.pk}/members/changes").json()
    assert {(c["member"], c["action"], c["new_role"], c["changed_by"]) for c in changes} == {
        ("ann", "added", "annotator", None), ("bob", "added", "annotator", None),
        ("feeder", "added", "ingest", None), ("mgr", "added", "manager", None),
    }


def test_the_admin_lists_and_filters_but_cannot_add_change_or_delete(project):
    root = f.UserFactory(username="root", is_staff=True, is_superuser=True)
    client = APIClient()
    client.force_login(root)
    listing = client.get("/admin/labeling/auditevent/", {"action__exact": "project.created"})
    assert listing.status_code == 200 and "reviews" in listing.content.decode()
    event = AuditEvent.objects.get(action="project.created", project_id=project.pk)
    assert client.get("/admin/labeling/auditevent/add/").status_code == 403
    assert client.post(f"/admin/labeling/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    client.post(f"/admin/labeling/auditevent/{event.pk}/change/", {"actor_name": "forged"})
    assert AuditEvent.objects.get(pk=event.pk).actor_name == ""
    # A project deleted in the admin is recorded like one deleted by the service.
    deleted = client.post(f"/admin/labeling/project/{project.pk}/delete/", {"post": "yes"})
    assert deleted.status_code == 302
    assert AuditEvent.objects.get(action="project.deleted").actor_name == "root"


def test_the_admin_cannot_promote_by_typing_a_status(project):
    root = f.UserFactory(username="root", is_staff=True, is_superuser=True)
    version = f.ModelVersionFactory(project=project, version=1, artifact_path="a/1")
    client = APIClient()
    client.force_login(root)
    page = client.get(f"/admin/labeling/modelversion/{version.pk}/change/").content.decode()
    assert 'name="status"' not in page  # shown read-only: promote through the API, where it is audited
