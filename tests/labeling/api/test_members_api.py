"""Members over HTTP: managers and staff add, re-role and remove members; every change is audited."""

from __future__ import annotations

import pytest

from labeling.models import AuditEvent, ProjectMembership

pytestmark = pytest.mark.django_db


def members_url(project) -> str:
    return f"/api/v1/projects/{project.pk}/members/"


def test_a_manager_adds_changes_and_removes_a_member_and_each_change_is_recorded(
    manager_client, manager, project, make_user
):
    newbie = make_user("newbie")
    added = manager_client.post(members_url(project), {"username": "newbie", "role": "reviewer"}, format="json")
    assert added.status_code == 201, added.content
    assert added.json()["role"] == "reviewer" and added.json()["created_by"] == "mgr"
    changed = manager_client.patch(f"{members_url(project)}{newbie.pk}", {"role": "annotator"}, format="json")
    assert changed.json()["role"] == "annotator"
    assert manager_client.delete(f"{members_url(project)}{newbie.pk}").status_code == 204
    assert not ProjectMembership.objects.filter(project=project, user=newbie).exists()
    log = manager_client.get(f"{members_url(project)}changes").json()
    newbie_log = [(c["action"], c["old_role"], c["new_role"], c["changed_by"]) for c in log if c["member"] == "newbie"]
    assert newbie_log == [
        ("removed", "annotator", "", "mgr"),
        ("role_changed", "reviewer", "annotator", "mgr"),
        ("added", "", "reviewer", "mgr"),
    ]
    listed = {m["username"]: m["role"] for m in manager_client.get(members_url(project)).json()}
    assert listed == {"ann": "annotator", "bob": "annotator", "feeder": "ingest", "mgr": "manager"}


def test_add_by_user_id_works_too(admin_client, project, make_user):
    user = make_user("by-id")
    response = admin_client.post(members_url(project), {"user_id": user.pk, "role": "annotator"}, format="json")
    assert response.status_code == 201
    assert AuditEvent.objects.get(action="member.added", target_id=str(user.pk)).actor_name == "boss"


@pytest.mark.parametrize(
    "body,field",
    [
        ({"username": "ghost", "role": "annotator"}, "username"),
        ({"user_id": 10**6, "role": "annotator"}, "user_id"),
        ({"username": "ann", "role": "annotator"}, "user"),  # already a member
        ({"username": "nobody", "role": "owner"}, "role"),
        ({"role": "annotator"}, "user"),
        ({"username": "nobody", "role": "annotator", "admin": True}, "admin"),
    ],
)
def test_bad_additions_are_400_naming_the_field_and_change_nothing(manager_client, project, nobody, body, field):
    before = (ProjectMembership.objects.count(), AuditEvent.objects.count())
    response = manager_client.post(members_url(project), body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert (ProjectMembership.objects.count(), AuditEvent.objects.count()) == before


def test_the_last_manager_cannot_be_removed_or_demoted(manager_client, manager, project):
    before = AuditEvent.objects.count()
    url = f"{members_url(project)}{manager.pk}"
    demoted = manager_client.patch(url, {"role": "annotator"}, format="json")
    assert demoted.status_code == 400 and "role" in demoted.json()["error"]["fields"]
    assert manager_client.delete(url).status_code == 400
    assert ProjectMembership.objects.get(project=project, user=manager).role == "manager"
    assert AuditEvent.objects.count() == before


def test_changing_a_non_member_is_404(manager_client, project, nobody):
    url = f"{members_url(project)}{nobody.pk}"
    assert manager_client.patch(url, {"role": "annotator"}, format="json").status_code == 404
    assert manager_client.delete(url).status_code == 404
    assert manager_client.delete(f"{members_url(project)}{10**6}").status_code == 404


def test_annotators_may_not_manage_members(annotator_client, project, nobody):
    response = annotator_client.post(members_url(project), {"username": "nobody", "role": "manager"}, format="json")
    assert response.status_code == 403
    assert not ProjectMembership.objects.filter(user=nobody).exists()


def test_a_removed_annotator_loses_the_project_at_once(manager_client, annotator_client, annotator, project, docs):
    assert annotator_client.post(f"/api/v1/projects/{project.pk}/queue/next").status_code == 200
    manager_client.delete(f"{members_url(project)}{annotator.pk}")
    assert annotator_client.post(f"/api/v1/projects/{project.pk}/queue/next").status_code == 404
    assert annotator_client.get("/api/v1/projects/").json() == []


def test_the_members_endpoints_are_in_the_schema(admin_client):
    schema = admin_client.get("/api/v1/schema/?format=json").json()
    ops = {op["operationId"] for path in schema["paths"].values() for op in path.values() if "operationId" in op}
    assert {"members_list", "members_create", "members_update", "members_destroy", "members_changes"} <= ops
