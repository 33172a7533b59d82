"""The annotation queue over HTTP: leases, labels, retries, edits, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.models import Annotation, AnnotationRevision, Assignment, AssignmentState, Document, Split

pytestmark = pytest.mark.django_db


def next_item(client, project):
    return client.post(f"/api/v1/projects/{project.pk}/queue/next")


def test_next_leases_the_highest_scored_document_with_its_prediction(annotator_client, project, docs, champion):
    response = next_item(annotator_client, project)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["document"]["id"] == docs[-1].pk  # highest acquisition score
    assert body["reason"]["holdout"] is False
    assert body["reason"]["strategy"] == project.acquisition_strategy
    assert body["reason"]["score"] == pytest.approx(0.11)
    assert body["prediction"]["label"] == "fresh"
    assert body["prediction"]["probabilities"] == {"fresh": 0.6, "rotten": 0.4}
    assert set(body["prediction"]) >= {"confidence", "entropy", "expected_entropy", "mutual_info", "margin"}
    assert [label["name"] for label in body["labels"]] == ["fresh", "rotten"]


def test_repeated_next_returns_the_same_lease(annotator_client, project, docs, champion):
    first = next_item(annotator_client, project).json()
    again = next_item(annotator_client, project).json()
    assert again["assignment"]["id"] == first["assignment"]["id"]
    assert Assignment.objects.filter(state=AssignmentState.ACTIVE).count() == 1


def test_a_lease_is_a_fixed_handful_of_statements(
    annotator_client, other_client, project, docs, champion, django_assert_max_num_queries
):
    """The hot path stays flat: no per-candidate queries, no heavy model JSON decoded twice.

    8 = token with the caller's role and the project's row, savepoint pair, no-flush commit with
    the lock and the expiry, context with the ranking, the end-of-ranking probe (this pool has fewer
    documents than the 50 candidates), leased points, lock-and-insert.
    """
    next_item(other_client, project)  # another lease in the project, so the diversity read runs
    with django_assert_max_num_queries(8):
        response = next_item(annotator_client, project)
    assert response.status_code == 200
    assert response.json()["prediction"] is not None


def test_a_leases_statements_do_not_grow_with_the_pool(annotator_client, other_client, project, docs, champion):
    """The same request on a pool 25x larger (past the ranking's 200-row window, so the end-of-ranking
    probe of a small pool no longer runs) issues no more statements: nothing per candidate, nothing
    that counts the pool."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from labeling.services.documents import document_bulk_create
    from tests.factories import PredictionFactory

    def statements() -> int:
        with CaptureQueriesContext(connection) as ctx:
            lease = next_item(annotator_client, project).json()["assignment"]["id"]
        annotator_client.post(f"/api/v1/assignments/{lease}/skip")
        return len(ctx.captured_queries)

    next_item(other_client, project)  # another live lease, so the diversity read runs in both
    small = statements()
    items = [{"text": f"Another review, number {i}.", "external_id": f"big{i}"} for i in range(300)]
    for i, (doc, _) in enumerate(document_bulk_create(project=project, items=items)):
        PredictionFactory(document=doc, model_version=champion, acquisition_score=0.5 + i / 1000)
    assert statements() <= small


def test_a_label_is_a_fixed_handful_of_statements(
    annotator_client, project, docs, champion, django_assert_max_num_queries
):
    """Token and roles, the lease, savepoint pair, the label set under a KEY SHARE lock (a label-set
    change waits for it), lease + document locked together, prediction, annotation read and insert,
    and the three state updates: 12, whatever the project's size."""
    lease = next_item(annotator_client, project).json()["assignment"]["id"]
    with django_assert_max_num_queries(12):
        response = annotator_client.post(f"/api/v1/assignments/{lease}/annotation", {"label": "fresh"}, format="json")
    assert response.status_code == 201
    assert response.json()["revisions"] == 0


def test_a_label_that_closes_an_overlap_or_draws_an_audit_adds_one_statement(
    annotator_client, other_client, admin_client, project, docs, champion, django_assert_max_num_queries
):
    """The team paths stay one statement over the single-label path (13 against 12): the label that
    closes an overlapped document reads the labels once (count and consensus both come from it), and
    an audit draw is a single insert that relies on the one-open-item constraint (no read before or
    after)."""
    from labeling.models import ReviewItem

    url = f"/api/v1/projects/{project.pk}/"
    assert admin_client.patch(url, {"overlap": 2, "overlap_scope": "all"}, format="json").status_code == 200
    first = next_item(annotator_client, project).json()
    label = f"/api/v1/assignments/{first['assignment']['id']}/annotation"
    assert annotator_client.post(label, {"label": "fresh"}, format="json").status_code == 201
    second = next_item(other_client, project).json()
    assert second["document"]["id"] == first["document"]["id"]  # the same document, its second place
    with django_assert_max_num_queries(13):
        closing = other_client.post(
            f"/api/v1/assignments/{second['assignment']['id']}/annotation", {"label": "fresh"}, format="json"
        )
    assert closing.status_code == 201 and Document.objects.get(pk=first["document"]["id"]).is_labeled
    patch = {"overlap": 1, "review_audit_share": 1.0}
    assert admin_client.patch(url, patch, format="json").status_code == 200
    audited = next_item(annotator_client, project).json()
    with django_assert_max_num_queries(13):
        response = annotator_client.post(
            f"/api/v1/assignments/{audited['assignment']['id']}/annotation", {"label": "rotten"}, format="json"
        )
    assert response.status_code == 201
    assert ReviewItem.objects.get(document_id=audited["document"]["id"]).reason == "audit"


def test_a_lease_lost_to_a_concurrent_insert_moves_on_to_the_next_candidate(
    annotator, other_annotator, project, docs, champion
):
    """ON CONFLICT DO NOTHING: the insert that loses the race stores nothing and raises nothing."""
    from labeling.services.assignments import _try_lease

    best = max(docs, key=lambda d: d.predictions.get().acquisition_score)
    Assignment.objects.create(
        document=best, annotator=other_annotator, leased_until=timezone.now() + timedelta(minutes=5)
    )
    second = sorted(docs, key=lambda d: d.predictions.get().acquisition_score)[-2]
    lease = _try_lease(project, annotator, [best, second], {"strategy": "test"})
    assert lease is not None and lease.document_id == second.pk
    assert Assignment.objects.get(pk=lease.pk).reason == {"strategy": "test"}
    assert Assignment.objects.filter(document=best, state=AssignmentState.ACTIVE).count() == 1


def test_two_annotators_get_different_documents(annotator_client, other_client, project, docs, champion):
    a = next_item(annotator_client, project).json()
    b = next_item(other_client, project).json()
    assert a["document"]["id"] != b["document"]["id"]


def test_diversity_rule_passes_over_a_near_copy_of_a_leased_item(
    annotator_client, other_client, project, docs, champion
):
    # The second-best candidate sits on the leased item's map point: the next annotator gets the third.
    docs_by_score = sorted(docs, key=lambda d: d.predictions.get().acquisition_score, reverse=True)
    docs_by_score[1].predictions.update(map_x=11.0, map_y=0.0)
    a = next_item(annotator_client, project).json()
    b = next_item(other_client, project).json()
    assert a["document"]["id"] == docs_by_score[0].pk
    assert b["document"]["id"] == docs_by_score[2].pk
    assert b["reason"]["rank"] == 2


def test_nothing_left_answers_204(annotator_client, project):
    assert next_item(annotator_client, project).status_code == 204


def test_cold_start_serves_documents_without_a_model(annotator_client, project, docs):
    body = next_item(annotator_client, project).json()
    assert body["reason"]["strategy"] == "cold_start_random"
    assert body["prediction"] is None


def test_holdout_items_are_served_blind(annotator_client, project, docs, champion):
    Document.objects.filter(project=project).update(split=Split.HOLDOUT)
    project.holdout_interleave = 1.0
    project.save()
    body = next_item(annotator_client, project).json()
    assert body["reason"]["holdout"] is True
    assert body["prediction"] is None


def test_label_is_stored_once_with_the_models_prediction_and_a_retry_returns_it(
    annotator_client, annotator, project, docs, champion, django_capture_on_commit_callbacks
):
    item = next_item(annotator_client, project).json()
    url = f"/api/v1/assignments/{item['assignment']['id']}/annotation"
    with django_capture_on_commit_callbacks() as callbacks:
        first = annotator_client.post(url, {"label": "rotten", "duration_ms": 1234}, format="json")
    assert first.status_code == 201, first.content
    retry = annotator_client.post(url, {"label": "rotten", "duration_ms": 1234}, format="json")
    assert retry.status_code == 200
    assert retry.json()["id"] == first.json()["id"]
    annotation = Annotation.objects.get()
    assert (annotation.label, annotation.duration_ms, annotation.annotator) == ("rotten", 1234, annotator)
    assert annotation.model_version == champion
    assert (annotation.predicted_label, annotation.predicted_confidence) == ("fresh", 0.6)
    assert Document.objects.get(pk=item["document"]["id"]).is_labeled
    assert Assignment.objects.get(pk=item["assignment"]["id"]).state == AssignmentState.DONE
    assert len(callbacks) == 1  # CHECK_RETRAIN, sent after commit
    # The labeled document is not offered again.
    assert next_item(annotator_client, project).json()["document"]["id"] != item["document"]["id"]


def test_a_retry_with_another_label_is_a_conflict(annotator_client, project, docs, champion):
    item = next_item(annotator_client, project).json()
    url = f"/api/v1/assignments/{item['assignment']['id']}/annotation"
    annotator_client.post(url, {"label": "rotten"}, format="json")
    response = annotator_client.post(url, {"label": "fresh"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_labeled"
    assert Annotation.objects.get().label == "rotten"


def test_editing_a_label_writes_a_revision(annotator_client, annotator, project, docs, champion):
    item = next_item(annotator_client, project).json()
    created = annotator_client.post(
        f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": "rotten"}, format="json"
    ).json()
    response = annotator_client.patch(f"/api/v1/annotations/{created['id']}", {"label": "fresh"}, format="json")
    assert response.status_code == 200
    assert response.json()["label"] == "fresh"
    revision = AnnotationRevision.objects.get()
    assert (revision.previous_label, revision.new_label, revision.changed_by) == (
        "rotten",
        "fresh",
        annotator,
    )


def test_admin_may_edit_anyones_label_but_another_annotator_may_not(
    annotator_client, other_client, admin_client, project, docs, champion
):
    item = next_item(annotator_client, project).json()
    created = annotator_client.post(
        f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": "rotten"}, format="json"
    ).json()
    url = f"/api/v1/annotations/{created['id']}"
    assert other_client.patch(url, {"label": "fresh"}, format="json").status_code == 403
    assert admin_client.patch(url, {"label": "fresh"}, format="json").status_code == 200
    assert Annotation.objects.get().label == "fresh"


def test_another_annotators_assignment_is_refused(annotator_client, other_client, project, docs, champion):
    item = next_item(annotator_client, project).json()
    aid = item["assignment"]["id"]
    for action in ("renew", "skip", "release"):
        response = other_client.post(f"/api/v1/assignments/{aid}/{action}")
        assert response.status_code == 403, action
        assert response.json()["error"]["code"] == "permission_denied"
    response = other_client.post(f"/api/v1/assignments/{aid}/annotation", {"label": "fresh"}, format="json")
    assert response.status_code == 403
    assert not Annotation.objects.exists()
    assert Assignment.objects.get(pk=aid).state == AssignmentState.ACTIVE


def test_an_expired_lease_cannot_be_labeled_and_returns_to_the_pool(
    annotator_client, other_client, project, docs, champion
):
    item = next_item(annotator_client, project).json()
    Assignment.objects.filter(pk=item["assignment"]["id"]).update(leased_until=timezone.now() - timedelta(seconds=1))
    response = annotator_client.post(
        f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": "fresh"}, format="json"
    )
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "lease_expired"
    assert not Annotation.objects.exists()
    # The document is free again: the next annotator gets it (it is still the best).
    assert next_item(other_client, project).json()["document"]["id"] == item["document"]["id"]


def test_renew_extends_the_lease(annotator_client, project, docs, champion):
    item = next_item(annotator_client, project).json()
    Assignment.objects.filter(pk=item["assignment"]["id"]).update(leased_until=timezone.now() + timedelta(seconds=5))
    response = annotator_client.post(f"/api/v1/assignments/{item['assignment']['id']}/renew")
    assert response.status_code == 200
    leased_until = Assignment.objects.get(pk=item["assignment"]["id"]).leased_until
    assert leased_until > timezone.now() + timedelta(minutes=project.lease_minutes - 1)


def test_skip_frees_the_document_and_does_not_offer_it_again(annotator_client, other_client, project, docs, champion):
    item = next_item(annotator_client, project).json()
    assert annotator_client.post(f"/api/v1/assignments/{item['assignment']['id']}/skip").json()["state"] == "skipped"
    assert next_item(annotator_client, project).json()["document"]["id"] != item["document"]["id"]
    assert next_item(other_client, project).json()["document"]["id"] == item["document"]["id"]


def test_release_returns_the_document_to_everyone(annotator_client, project, docs, champion):
    item = next_item(annotator_client, project).json()
    response = annotator_client.post(f"/api/v1/assignments/{item['assignment']['id']}/release")
    assert response.json()["state"] == "released"
    assert next_item(annotator_client, project).json()["document"]["id"] == item["document"]["id"]


def test_recent_annotations_list_shows_only_the_callers(annotator_client, other_client, project, docs, champion):
    for client, label in ((annotator_client, "fresh"), (other_client, "rotten")):
        item = next_item(client, project).json()
        client.post(f"/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": label}, format="json")
    mine = annotator_client.get(f"/api/v1/projects/{project.pk}/annotations?mine=1").json()
    assert [(a["annotator"], a["label"]) for a in mine] == [("ann", "fresh")]
