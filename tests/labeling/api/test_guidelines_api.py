"""Guidelines and flags through the API: managers write Markdown, every member reads it sanitised;
annotators flag what they hold, the flag reaches the review queue, managers list and count flags;
bad input is a 400 naming the field and stores nothing."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling import roles
from labeling.models import AuditEvent, DocumentFlag, ReviewComment, ReviewItem, ReviewReason
from labeling.services.memberships import membership_ensure
from tests import factories as f
from tests.labeling.api.conftest import token_client

pytestmark = pytest.mark.django_db

HOSTILE = """# Rules

Label **fresh** when the reviewer liked it.

<script>alert("x")</script>

<img src=x onerror="alert(1)">

[click](javascript:alert(1)) <a href="javascript:alert(2)" onclick="alert(3)">raw</a>

<p style="color:red">styled</p> <iframe src="https://evil.example"></iframe>

[docs](https://example.org/guide)

| word | label |
|---|---|
| superb | fresh |
"""


def _url(project) -> str:
    return f"/api/v1/projects/{project.pk}/guidelines"


def test_a_manager_writes_guidelines_everyone_reads_them_sanitised(project, manager_client, annotator_client) -> None:
    put = manager_client.put(
        _url(project), {"markdown": HOSTILE, "labels": {"fresh": "e.g. *a delight*", "rotten": ""}}, format="json"
    )
    assert put.status_code == 200, put.json()
    got = annotator_client.get(_url(project)).json()
    assert got["markdown"] == HOSTILE  # the source is kept as written
    html = got["html"]
    assert "<h1>Rules</h1>" in html and "<strong>fresh</strong>" in html and "<table>" in html
    assert '<a href="https://example.org/guide" rel="noopener noreferrer nofollow">docs</a>' in html
    lowered = html.lower()
    for banned in ("<script", 'alert("x")', "onerror", "onclick", 'href="javascript', "style=", "<iframe", "<img"):
        assert banned not in lowered, banned
    assert "<p>styled</p>" in html  # what is left of a tag that was not allowed
    notes = {item["name"]: item for item in got["labels"]}
    assert notes["fresh"]["html"] == "<p>e.g. <em>a delight</em></p>\n" and notes["fresh"]["key"] == "1"
    assert notes["rotten"]["markdown"] == "" and notes["rotten"]["html"] == ""
    event = AuditEvent.objects.get(action="guidelines.updated")
    assert event.actor_name == "mgr" and event.data["guidelines"]["new"] == HOSTILE
    # The same text again changes and records nothing.
    assert manager_client.put(_url(project), {"markdown": HOSTILE}, format="json").status_code == 200
    assert AuditEvent.objects.filter(action="guidelines.updated").count() == 1


@pytest.mark.parametrize(
    "body,field",
    [
        ({"markdown": "x" * 20_001}, "markdown"),
        ({"markdown": 5}, "markdown"),
        ({"labels": {"fresh": "y" * 5_001}}, "labels"),
        ({"labels": {"zebra": "a striped one"}}, "labels"),
        ({"labels": ["fresh"]}, "labels"),
        ({"markdown": "ok", "html": "<b>"}, "html"),
        ({}, "markdown"),
    ],
)
def test_bad_guidelines_are_a_400_naming_the_field_and_store_nothing(project, manager_client, body, field) -> None:
    got = manager_client.put(_url(project), body, format="json")
    assert got.status_code == 400, got.json()
    assert field in got.json()["error"]["fields"]
    project.refresh_from_db()
    assert project.guidelines == "" and project.label_guidelines == {}
    assert not AuditEvent.objects.filter(action="guidelines.updated").exists()


def _leased(client, project) -> dict:
    got = client.post(f"/api/v1/projects/{project.pk}/queue/next")
    assert got.status_code == 200
    return got.json()


def test_a_flag_reaches_the_review_queue_with_its_comment(project, docs, annotator_client, manager_client) -> None:
    doc_id = _leased(annotator_client, project)["document"]["id"]
    url = f"/api/v1/projects/{project.pk}/documents/{doc_id}/flags"
    got = annotator_client.post(url, {"kind": "offensive", "comment": "slur in line 2"}, format="json")
    assert got.status_code == 201, got.json()
    body = got.json()
    assert (body["kind"], body["author"], body["comment"]) == ("offensive", "ann", "slur in line 2")
    assert body["review_state"] == "open"
    again = annotator_client.post(url, {"kind": "offensive"}, format="json")
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert annotator_client.post(url, {"kind": "unclear"}, format="json").status_code == 201
    item = ReviewItem.objects.get(document_id=doc_id, state="open")
    assert item.reason == ReviewReason.FLAG and DocumentFlag.objects.filter(item=item).count() == 2
    # A reviewer leases it from the queue and sees the flags and the comment.
    reviewer = f.UserFactory(username="rev")
    membership_ensure(project=project, user=reviewer, role=roles.REVIEWER)
    review = token_client(reviewer).post(f"/api/v1/projects/{project.pk}/review/next").json()
    assert review["id"] == item.pk and review["reason"] == "flag"
    assert [(fl["kind"], fl["author"]) for fl in review["flags"]] == [("offensive", "ann"), ("unclear", "ann")]
    assert [c["text"] for c in review["comments"]] == ["slur in line 2"]
    # Managers list (filter by kind and state) and count them.
    listing = manager_client.get(f"/api/v1/projects/{project.pk}/flags/?kind=offensive&state=open").json()
    assert [fl["id"] for fl in listing["flags"]] == [body["id"]]
    assert listing["counts"] == {"open": 2, "total": 2, "open_by_kind": {"unclear": 1, "offensive": 1, "duplicate": 0}}
    decided = token_client(reviewer).post(
        f"/api/v1/projects/{project.pk}/review/items/{item.pk}/decision", {"label": "rotten"}, format="json"
    )
    assert decided.status_code == 201
    closed = manager_client.get(f"/api/v1/projects/{project.pk}/flags/?state=open").json()
    assert closed["flags"] == [] and closed["counts"]["total"] == 2


def test_a_flag_joins_an_open_review_item(project, docs, manager_client) -> None:
    f.AnnotationFactory(document=docs[0], annotator=f.UserFactory(username="x1"))
    item = ReviewItem.objects.create(project=project, document=docs[0], reason=ReviewReason.AUDIT)
    got = manager_client.post(f"/api/v1/projects/{project.pk}/documents/{docs[0].pk}/flags", {"kind": "duplicate"},
                              format="json")
    assert got.status_code == 201 and got.json()["review_item"] == item.pk
    assert ReviewItem.objects.filter(document=docs[0]).count() == 1


def test_annotators_flag_only_what_they_hold_or_labeled(project, docs, annotator_client) -> None:
    url = f"/api/v1/projects/{project.pk}/documents/{docs[5].pk}/flags"
    assert annotator_client.post(url, {"kind": "unclear"}, format="json").status_code == 404
    assert not ReviewItem.objects.exists()


@pytest.mark.parametrize(
    "body,field",
    [({"kind": "boring"}, "kind"), ({}, "kind"), ({"kind": "unclear", "comment": "c" * 10_001}, "comment"),
     ({"kind": "unclear", "severity": 3}, "severity")],
)
def test_bad_flags_are_a_400_naming_the_field_and_store_nothing(project, docs, annotator_client, body, field) -> None:
    doc_id = _leased(annotator_client, project)["document"]["id"]
    got = annotator_client.post(f"/api/v1/projects/{project.pk}/documents/{doc_id}/flags", body, format="json")
    assert got.status_code == 400 and field in got.json()["error"]["fields"]
    assert not DocumentFlag.objects.exists() and not ReviewItem.objects.exists() and not ReviewComment.objects.exists()


def test_bad_flag_filters_are_a_400(project, manager_client) -> None:
    got = manager_client.get(f"/api/v1/projects/{project.pk}/flags/?kind=rude")
    assert got.status_code == 400 and "kind" in got.json()["error"]["fields"]


def test_the_dashboard_counts_flags_for_managers_only(project, docs, annotator, manager, manager_client) -> None:
    manager_client.post(f"/api/v1/projects/{project.pk}/documents/{docs[0].pk}/flags", {"kind": "unclear"},
                        format="json")
    session = APIClient()
    session.force_login(manager)
    counts = session.get(f"/ui/projects/{project.pk}/dashboard.json").json()["flags"]
    assert counts["open"] == 1 and counts["open_by_kind"]["unclear"] == 1
    session.force_login(annotator)
    assert "flags" not in session.get(f"/ui/projects/{project.pk}/dashboard.json").json()
