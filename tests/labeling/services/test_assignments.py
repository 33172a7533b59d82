"""Leases in the service: ranking, holdout interleave, expiry, cold start, row locks across threads."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from labeling.models import Assignment, AssignmentState, Document, ModelStatus, Split
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next, assignment_skip
from labeling.services.documents import document_bulk_create
from labeling.services.projects import project_create
from tests.factories import ModelVersionFactory, PredictionFactory, UserFactory

pytestmark = pytest.mark.django_db


def make_project(n: int = 40, **policy):
    project = project_create(name=f"p{policy}", labels=["a", "b"], holdout_fraction=0.0, **policy)
    docs = [
        d for d, _ in document_bulk_create(project=project, items=[{"text": f"doc {i}"} for i in range(n)])
    ]
    return project, docs


def annotator(name: str = "ann"):
    # Services trust their caller: membership is the API's and the pages' gate, not the queue's.
    return UserFactory(username=name)


def test_holdout_interleave_is_deterministic_and_near_the_share():
    user = annotator()
    flags = []
    for run in range(2):  # two projects, same seed: the draw depends on (seed, annotator, lease number)
        project, docs = make_project(200, holdout_interleave=0.3, seed=5, description=f"run {run}")
        Document.objects.filter(pk__in=[d.pk for d in docs[:100]]).update(split=Split.HOLDOUT)
        seq = []
        for _ in range(60):
            lease = assignment_next(project=project, annotator=user)
            seq.append(lease.reason["holdout"])
            annotation_submit(assignment=lease, user=user, label="a")
        flags.append(seq)
    assert flags[0] == flags[1]
    assert 8 <= sum(flags[0]) <= 30


def test_cold_start_order_is_seeded_random_not_insertion_order():
    project, docs = make_project(40, seed=3)
    # The pivot is seeded per (project seed, annotator, lease count), so one lease lands on the first
    # document one time in 40 (the ids, and so this test's outcome, move with the tests run before it):
    # five annotators' first leases in insertion order would be a 1 in 40**5 chance.
    served = []
    for n in range(5):
        lease = assignment_next(project=project, annotator=annotator(f"ann{n}"))
        assert lease.reason["strategy"] == "cold_start_random"
        served.append(lease.document_id)
    assert served != [d.pk for d in docs[:5]]


def test_expired_leases_return_to_the_pool_inside_the_lease_transaction():
    project, docs = make_project(1)
    a, b = annotator("a"), annotator("b")
    lease = assignment_next(project=project, annotator=a)
    assert assignment_next(project=project, annotator=b) is None  # the only document is leased
    Assignment.objects.filter(pk=lease.pk).update(leased_until=timezone.now() - timedelta(seconds=1))
    taken = assignment_next(project=project, annotator=b)
    assert taken.document_id == lease.document_id
    assert Assignment.objects.get(pk=lease.pk).state == AssignmentState.EXPIRED


def test_unscored_documents_are_served_after_the_champions_ranking_runs_out():
    project, docs = make_project(3)
    champion = ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    PredictionFactory(document=docs[0], model_version=champion, acquisition_score=0.9)
    user = annotator()
    first = assignment_next(project=project, annotator=user)
    assert (first.document_id, first.reason["strategy"]) == (docs[0].pk, project.acquisition_strategy)
    annotation_submit(assignment=first, user=user, label="a")
    second = assignment_next(project=project, annotator=user)
    assert second.reason["strategy"] == "cold_start_random"
    assert second.document_id in (docs[1].pk, docs[2].pk)


@pytest.mark.django_db(transaction=True)
def test_parallel_callers_never_share_a_document():
    project, docs = make_project(30)
    champion = ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    for i, doc in enumerate(docs):
        PredictionFactory(document=doc, model_version=champion, acquisition_score=i)
    users = [annotator(f"u{i}") for i in range(8)]
    got: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(users))

    def take(user) -> None:
        try:
            barrier.wait()
            for _ in range(3):
                lease = assignment_next(project=project, annotator=user)
                with lock:
                    got.append(lease.document_id)
                annotation_submit(assignment=lease, user=user, label="b")
        finally:
            connection.close()

    threads = [threading.Thread(target=take, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 24 and len(set(got)) == 24


def test_power_bald_serves_its_draw_and_records_each_leases_probability():
    import numpy as np

    from modelsvc.acquisition import POWER_FLOOR, gumbel_keys

    project, docs = make_project(12, acquisition_strategy="power_bald")
    champion = ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    bald = np.linspace(0.01, 0.3, len(docs))
    keys = gumbel_keys(bald, 1.0, seed=5)
    for doc, b, k in zip(docs, bald, keys, strict=True):
        PredictionFactory(document=doc, model_version=champion, mutual_info=float(b), acquisition_score=float(k))
    user = annotator()
    served: list[int] = []
    labeled: set[int] = set()
    for i in range(len(docs)):
        # The draw's pool: every document still waiting for a label (a skipped one waits for others).
        open_bald = bald[[d.pk not in labeled for d in docs]]
        lease = assignment_next(project=project, annotator=user)
        served.append(lease.document_id)
        b = bald[[d.pk for d in docs].index(lease.document_id)]
        assert lease.selection_probability == pytest.approx((b + POWER_FLOOR) / (open_bald + POWER_FLOOR).sum())
        assert lease.selection_pool_size == len(open_bald)
        assert lease.reason["power"] == 1.0
        if i % 3 == 2:  # a skip hands the document back to others, never to the same annotator
            assignment_skip(assignment=lease, user=user)
        else:
            annotation_submit(assignment=lease, user=user, label="a")
            labeled.add(lease.document_id)
    # The order is the Gumbel-top-k draw, each document once.
    assert served == [docs[i].pk for i in np.argsort(-keys)]
    assert assignment_next(project=project, annotator=user) is None
    stored = Assignment.objects.filter(project=project, state=AssignmentState.DONE).first()
    assert stored.selection_probability is not None and stored.selection_pool_size == len(docs)


def test_deterministic_strategies_record_no_selection_probability():
    project, docs = make_project(3, acquisition_strategy="bald")
    champion = ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    PredictionFactory(document=docs[0], model_version=champion, acquisition_score=0.9)
    lease = assignment_next(project=project, annotator=annotator())
    assert lease.selection_probability is None and "power" not in lease.reason
