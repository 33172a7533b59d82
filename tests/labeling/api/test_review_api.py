"""The review API: next item with everything the page shows, decide, comment, release; bad input is a 4xx."""

from __future__ import annotations

import pytest
import yaml

from labeling import roles
from labeling.models import Annotation, AuditAction, AuditEvent, ReviewDecision, ReviewItem, ReviewReason
from labeling.services.memberships import membership_ensure
from labeling.services.review import review_flag
from tests import factories as f
from tests.labeling.api.conftest import token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewed(project):
    doc = f.DocumentFactory(project=project, labels_required=2)
    for name, label in (("x1", "fresh"), ("x2", "rotten")):
        f.AnnotationFactory(document=doc, annotator=f.UserFactory(username=name), label=label)
    item = ReviewItem.objects.create(project=project, document=doc, reason=ReviewReason.DISAGREEMENT)
    reviewer = f.UserFactory(username="rev")
    membership_ensure(project=project, user=reviewer, role=roles.REVIEWER)
    return item, token_client(reviewer)


def test_a_reviewer_leases_decides_and_the_labels_stay(project, reviewed) -> None:
    item, client = reviewed
    base = f"/api/v1/projects/{project.pk}/review"
    got = client.post(f"{base}/next")
    assert got.status_code == 200
    body = got.json()
    assert body["id"] == item.pk and body["reason"] == "disagreement" and body["reviewer"] == "rev"
    assert {(lab["annotator"], lab["label"]) for lab in body["labels"]} == {("x1", "fresh"), ("x2", "rotten")}
    assert body["consensus"] == {"label": None, "labels": None, "agreement": 0.5, "reason": "tie"}
    assert [label["name"] for label in body["label_set"]] == ["fresh", "rotten"]
    commented = client.post(f"{base}/items/{item.pk}/comments", {"text": "ambiguous"}, format="json")
    assert commented.status_code == 201 and commented.json()["author"] == "rev"
    decided = client.post(f"{base}/items/{item.pk}/decision", {"label": "rotten", "comment": "ok"}, format="json")
    assert decided.status_code == 201
    after = decided.json()
    assert (after["state"], after["final_label"], after["decided_by"]) == ("decided", "rotten", "reviewer")
    assert after["decisions"][0]["action"] == "accept" and after["comments"][0]["text"] == "ambiguous"
    assert sorted(Annotation.objects.filter(document=item.document).values_list("label", flat=True)) == [
        "fresh",
        "rotten",
    ]
    assert client.post(f"{base}/next").status_code == 204
    listing = client.get(f"{base}/items/?state=decided").json()
    assert [i["id"] for i in listing["items"]] == [item.pk] and listing["summary"]["decided"] == 1


def test_bad_review_input_is_a_named_4xx_and_changes_nothing(project, reviewed, annotator) -> None:
    item, client = reviewed
    base = f"/api/v1/projects/{project.pk}/review/items/{item.pk}"
    bad_label = client.post(f"{base}/decision", {"label": "zebra"}, format="json")
    assert bad_label.status_code == 400 and "label" in bad_label.json()["error"]["fields"]
    unknown = client.post(f"{base}/decision", {"label": "fresh", "verdict": 1}, format="json")
    assert unknown.status_code == 400 and "verdict" in unknown.json()["error"]["fields"]
    assert client.post(f"{base}/comments", {"text": ""}, format="json").status_code == 400
    assert client.get(f"/api/v1/projects/{project.pk}/review/items/?state=maybe").status_code == 400
    assert not ReviewDecision.objects.exists()
    assert client.post(f"{base}/decision", {"label": "fresh"}, format="json").status_code == 201
    again = client.post(f"{base}/decision", {"label": "rotten"}, format="json")
    assert again.status_code == 409 and again.json()["error"]["code"] == "not_in_review"
    assert ReviewDecision.objects.count() == 1
    # An item of another project is 404 under this one; an annotator is 403.
    other = f.ProjectFactory()
    elsewhere = ReviewItem.objects.create(
        project=other, document=f.DocumentFactory(project=other), reason=ReviewReason.AUDIT
    )
    assert client.get(f"/api/v1/projects/{project.pk}/review/items/{elsewhere.pk}").status_code == 404
    assert token_client(annotator).post(f"/api/v1/projects/{project.pk}/review/next").status_code == 403


def test_another_reviewers_item_is_409(project, reviewed) -> None:
    item, client = reviewed
    second = f.UserFactory(username="rev2")
    membership_ensure(project=project, user=second, role=roles.REVIEWER)
    client.post(f"/api/v1/projects/{project.pk}/review/next")
    taken = token_client(second).post(
        f"/api/v1/projects/{project.pk}/review/items/{item.pk}/decision", {"label": "fresh"}, format="json"
    )
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "review_leased"
    assert review_flag(project=project, document_ids=[item.document_id], reason="noise") == 0


def test_annotator_quality_is_in_the_dashboard_json_for_managers_only(project, reviewed, annotator, admin_user):
    from django.test import Client

    membership_ensure(project=project, user=annotator, role=roles.ANNOTATOR)
    url = f"/ui/projects/{project.pk}/dashboard.json"
    seen = {}
    for user in (annotator, admin_user):
        client = Client()
        client.force_login(user)
        response = client.get(url)
        assert response.status_code == 200, response.content[:300]
        seen[user.username] = response.json()
    assert "quality" not in seen[annotator.username]
    assert "quality" in seen[admin_user.username]
    team = seen[annotator.username]["team"]
    assert team["agreement"]["note"] == "too few overlapped items" and team["review"]["open"] == 1


def test_the_share_of_labels_flagged_for_review_is_a_project_setting(project, admin_client, client) -> None:
    url = f"/api/v1/projects/{project.pk}/"
    assert admin_client.get(url).json()["noise_review_share"] == 0.1  # the default
    changed = admin_client.patch(url, {"noise_review_share": 0.25}, format="json")
    assert changed.status_code == 200 and changed.json()["noise_review_share"] == 0.25
    project.refresh_from_db()
    assert project.noise_review_share == 0.25
    too_much = admin_client.patch(url, {"noise_review_share": 0.75}, format="json")
    assert too_much.status_code == 400 and "noise_review_share" in too_much.json()["error"]["fields"]
    project.refresh_from_db()
    assert project.noise_review_share == 0.25
    schema = yaml.safe_load(client.get("/api/v1/schema/").content)["components"]["schemas"]
    field = schema["PatchedProjectPolicyUpdate"]["properties"]["noise_review_share"]
    assert (field["minimum"], field["maximum"]) == (0.0, 0.5)
    assert "noise_review_share" in schema["Project"]["properties"]


def test_whether_flagged_labels_wait_for_review_is_a_manager_setting_and_audited(
    project, manager_client, annotator, client
) -> None:
    url = f"/api/v1/projects/{project.pk}/"
    assert manager_client.get(url).json()["noise_hold_flagged"] is False  # the default: flagged labels train
    for bad in ("maybe", 1, "true", None):
        refused = manager_client.patch(url, {"noise_hold_flagged": bad}, format="json")
        assert refused.status_code == 400, bad
        assert "noise_hold_flagged" in refused.json()["error"]["fields"], bad
    assert not AuditEvent.objects.filter(action=AuditAction.PROJECT_UPDATED).exists()  # nothing stored
    project.refresh_from_db()
    assert project.noise_hold_flagged is False
    member = token_client(annotator)
    assert member.patch(url, {"noise_hold_flagged": True}, format="json").status_code == 403
    changed = manager_client.patch(url, {"noise_hold_flagged": True}, format="json")
    assert changed.status_code == 200 and changed.json()["noise_hold_flagged"] is True
    project.refresh_from_db()
    assert project.noise_hold_flagged is True
    event = AuditEvent.objects.get(action=AuditAction.PROJECT_UPDATED)
    assert event.data == {"noise_hold_flagged": {"old": False, "new": True}}
    assert event.actor_name == "mgr"
    schema = yaml.safe_load(client.get("/api/v1/schema/").content)["components"]["schemas"]
    assert schema["PatchedProjectPolicyUpdate"]["properties"]["noise_hold_flagged"]["type"] == "boolean"
    assert schema["Project"]["properties"]["noise_hold_flagged"]["type"] == "boolean"
