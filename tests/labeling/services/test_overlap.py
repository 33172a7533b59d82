"""Overlap: a document goes to several annotators, never twice to one, and closes once it has its labels."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from labeling.models import Assignment, AssignmentState, Document, ModelStatus, OverlapScope, Prediction, Split
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next, assignment_release, assignment_skip
from labeling.services.documents import document_bulk_create
from labeling.services.overlap import labels_required_for
from labeling.services.projects import project_create, project_update_policy
from tests.factories import ModelVersionFactory, PredictionFactory, UserFactory

pytestmark = pytest.mark.django_db


def make_project(n: int = 3, **policy):
    project = project_create(name=f"p{policy}", labels=["a", "b"], holdout_fraction=0.0, **policy)
    if not n:
        return project, []
    docs = [d for d, _ in document_bulk_create(project=project, items=[{"text": f"doc {i}"} for i in range(n)])]
    return project, docs


def users(n: int) -> list:
    return [UserFactory(username=f"ann{i}") for i in range(n)]


def test_overlap_one_is_one_label_per_document() -> None:
    project, docs = make_project(1)
    a, b = users(2)
    lease = assignment_next(project=project, annotator=a)
    assert lease is not None and lease.slot == 0
    assert assignment_next(project=project, annotator=b) is None  # the one place is held
    annotation_submit(assignment=lease, user=a, label="a")
    assert Document.objects.get(pk=docs[0].pk).is_labeled


def test_a_document_goes_to_as_many_annotators_as_it_needs_and_no_more() -> None:
    project, docs = make_project(1, overlap=2)
    a, b, c = users(3)
    first = assignment_next(project=project, annotator=a)
    second = assignment_next(project=project, annotator=b)
    assert first is not None and second is not None
    assert first.document_id == second.document_id == docs[0].pk
    assert {first.slot, second.slot} == {0, 1}
    # Both places are in flight: a third annotator is not served the document.
    assert assignment_next(project=project, annotator=c) is None
    annotation_submit(assignment=first, user=a, label="a")
    assert not Document.objects.get(pk=docs[0].pk).is_labeled
    assert assignment_next(project=project, annotator=c) is None  # one labeled, one live
    annotation_submit(assignment=second, user=b, label="a")
    assert Document.objects.get(pk=docs[0].pk).is_labeled
    assert assignment_next(project=project, annotator=c) is None


def test_an_annotator_never_gets_a_document_twice() -> None:
    project, docs = make_project(2, overlap=3)
    a, b = users(2)
    first = assignment_next(project=project, annotator=a)
    annotation_submit(assignment=first, user=a, label="a")
    second = assignment_next(project=project, annotator=a)
    assert second is not None and second.document_id != first.document_id
    assignment_skip(assignment=second, user=a)
    assert assignment_next(project=project, annotator=a) is None  # labeled one, skipped the other
    # A skip frees the place for someone else.
    other = assignment_next(project=project, annotator=b)
    assert other is not None


def test_a_released_or_expired_place_is_free_again() -> None:
    project, docs = make_project(1, overlap=2)
    a, b, c = users(3)
    first = assignment_next(project=project, annotator=a)
    assignment_next(project=project, annotator=b)
    assignment_release(assignment=first, user=a)
    third = assignment_next(project=project, annotator=c)
    assert third is not None and third.slot == first.slot


def test_ranked_pool_items_get_their_second_annotator() -> None:
    project, docs = make_project(3, overlap=2)
    champion = ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    for i, doc in enumerate(docs):
        PredictionFactory(document=doc, model_version=champion, acquisition_score=float(i))
    a, b = users(2)
    top = docs[-1].pk
    assert assignment_next(project=project, annotator=a).document_id == top
    assert assignment_next(project=project, annotator=b).document_id == top
    done = Assignment.objects.filter(document_id=top)
    for lease in done:
        annotation_submit(assignment=lease, user=lease.annotator, label="b")
    assert not Prediction.objects.get(document_id=top).in_queue


def test_the_scope_decides_which_documents_get_overlap() -> None:
    project, _ = make_project(0, overlap=3, overlap_scope=OverlapScope.HOLDOUT)
    assert labels_required_for(project, split=Split.HOLDOUT, content_hash="x") == 3
    assert labels_required_for(project, split=Split.POOL, content_hash="x") == 1
    project.overlap_scope = OverlapScope.SHARE
    project.overlap_share = 0.3
    drawn = [labels_required_for(project, split=Split.POOL, content_hash=str(i)) for i in range(2000)]
    assert set(drawn) == {1, 3} and 0.25 < drawn.count(3) / 2000 < 0.35
    assert labels_required_for(project, split=Split.HOLDOUT, content_hash="x") == 1
    again = [labels_required_for(project, split=Split.POOL, content_hash=str(i)) for i in range(2000)]
    assert again == drawn  # seeded


def test_a_policy_change_reopens_and_closes_documents() -> None:
    project, docs = make_project(2)
    a = users(1)[0]
    lease = assignment_next(project=project, annotator=a)
    annotation_submit(assignment=lease, user=a, label="a")
    project = project_update_policy(project=project, overlap=2)
    assert set(Document.objects.values_list("labels_required", flat=True)) == {2}
    assert not Document.objects.get(pk=lease.document_id).is_labeled  # re-opened for a second label
    project = project_update_policy(project=project, overlap=1)
    assert Document.objects.get(pk=lease.document_id).is_labeled


@pytest.mark.parametrize("field,value", [("overlap", 0), ("overlap", 6), ("min_agreement", 1.5)])
def test_an_out_of_range_policy_is_refused_naming_the_field(field: str, value: float) -> None:
    project, _ = make_project(1)
    with pytest.raises(ValidationError) as exc:
        project_update_policy(project=project, **{field: value})
    assert field in exc.value.message_dict
    project.refresh_from_db()
    assert project.overlap == 1 and project.min_agreement == 0.5


def test_a_live_place_is_counted_even_for_an_annotator_state_left_behind() -> None:
    project, docs = make_project(1, overlap=2)
    a, b = users(2)
    assignment_next(project=project, annotator=a)
    assert Assignment.objects.filter(state=AssignmentState.ACTIVE).count() == 1
    assert assignment_next(project=project, annotator=a).document_id == docs[0].pk  # the same live lease
    assert Assignment.objects.filter(state=AssignmentState.ACTIVE).count() == 1
    assert assignment_next(project=project, annotator=b) is not None


def test_an_overlap_change_on_every_document_refreshes_the_planners_statistics():
    # The queue plans on labels_required; after a change on every document of a large project the old
    # statistics doubled its p95 until autovacuum ran (docs/BENCHMARKS.md), so the change ANALYZEs.
    from django.db import connection

    from labeling.services.planner import ANALYZE_AFTER_ROWS
    from tests.factories import bulk_scored_project

    project, _ = bulk_scored_project(ANALYZE_AFTER_ROWS + 500, champion_labels=("a", "b"))
    postgres = connection.vendor == "postgresql"  # planner statistics are PostgreSQL's; SQLite has none to refresh

    def common_values() -> str:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'labeling_document'"
                " AND attname = 'labels_required'"
            )
            return cursor.fetchone()[0]

    if postgres:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE labeling_document")  # as autovacuum left it after the import
        assert common_values() == "{1}"
    project_update_policy(project=project, overlap=2, overlap_scope=OverlapScope.ALL)
    assert set(Document.objects.filter(project=project).values_list("labels_required", flat=True)) == {2}
    if postgres:
        assert common_values() == "{2}"
