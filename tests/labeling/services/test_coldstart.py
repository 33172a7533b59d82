"""The pre-model queue order: computed once per pool change, served by the queue under its rules."""

from __future__ import annotations

import pytest

from labeling.models import Document, ModelStatus, Split
from labeling.services import coldstart
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next, assignment_skip
from labeling.services.documents import document_bulk_create
from labeling.services.projects import project_create
from labeling.services.scoring import project_score_pending
from tests.factories import ModelVersionFactory, PredictionFactory, UserFactory
from tests.modelsvc.conftest import NEGATIVE, POSITIVE, tiny_encoder_dir  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def tiny_host(settings, tiny_encoder_dir):  # noqa: F811
    """This host encodes with the tiny in-process BERT (the order's mechanics, not its quality, are tested)."""
    settings.MODEL_ENCODER = str(tiny_encoder_dir)
    settings.MODEL_DEVICE = "cpu"
    settings.COLD_START_METHOD = "typiclust"
    return settings


def make_project(n: int = 60, **policy):
    policy = {"holdout_fraction": 0.0, "holdout_interleave": 0.0, "retrain_after": 4, **policy}
    project = project_create(name=f"p{policy}", labels=["pos", "neg"], **policy)
    items = [
        {"text": f"the film was {POSITIVE[i % 8] if i % 2 else NEGATIVE[i % 8]} and {NEGATIVE[(i * 3) % 8]} {i}"}
        for i in range(n)
    ]
    docs = [d for d, _ in document_bulk_create(project=project, items=items)]
    return project, docs


def ranks(project) -> list[int]:
    rows = Document.objects.filter(project=project, cold_start_rank__isnull=False).order_by("cold_start_rank")
    return list(rows.values_list("pk", flat=True))


def test_the_order_is_computed_once_per_pool_change_and_the_queue_serves_it_first(tiny_host):
    project, docs = make_project()
    report = project_score_pending(project_id=project.pk)  # what an ingest enqueues
    assert report.cold_start == {"method": "typiclust", "ranked": 8, "sample": 60}  # 2 x max(4, 2 x 2)
    order = ranks(project)
    assert len(order) == 8
    project.refresh_from_db()
    assert project.cold_start["strategy"] == "cold_start_typiclust"
    assert coldstart.cold_start_order_refresh(project_id=project.pk) == {"skipped": "up to date"}

    a, b = UserFactory(username="a"), UserFactory(username="b")
    first = assignment_next(project=project, annotator=a)
    assert (first.document_id, first.reason["strategy"], first.reason["rank"]) == (order[0], "cold_start_typiclust", 1)
    assert assignment_next(project=project, annotator=b).document_id == order[1]  # a's lease holds rank 1
    assignment_skip(assignment=first, user=a)
    again = assignment_next(project=project, annotator=a)
    assert again.document_id == order[2]  # never the skipped document again to the same annotator
    annotation_submit(assignment=again, user=a, label="pos")
    assert assignment_next(project=project, annotator=a).document_id == order[3]
    c = UserFactory(username="c")
    assert assignment_next(project=project, annotator=c).document_id == order[0]  # a skipped it: free for others

    document_bulk_create(project=project, items=[{"text": "a brand new snippet, brilliant"}])
    refreshed = project_score_pending(project_id=project.pk)
    assert refreshed.cold_start == {"method": "typiclust", "ranked": 8, "sample": 60}  # one labeled, one new


def test_overlap_serves_a_ranked_document_to_each_of_its_annotators_once(tiny_host):
    project, docs = make_project(overlap=2)
    coldstart.cold_start_order_refresh(project_id=project.pk)
    order = ranks(project)
    users = [UserFactory(username=f"u{i}") for i in range(3)]
    served = [assignment_next(project=project, annotator=u).document_id for u in users]
    assert served == [order[0], order[0], order[1]]  # two places on rank 1, then rank 2


def test_zero_shot_ranks_the_queue_before_the_first_model_and_the_model_replaces_it(tiny_host):
    tiny_host.COLD_START_METHOD = "zero_shot"
    project, docs = make_project()
    assert coldstart.cold_start_order_refresh(project_id=project.pk)["method"] == "zero_shot"
    order = ranks(project)
    user = UserFactory()
    lease = assignment_next(project=project, annotator=user)
    assert (lease.document_id, lease.reason["strategy"]) == (order[0], "cold_start_zero_shot")
    assert lease.reason["model_version"] is None  # nothing was trained, nothing is stored as a model
    assert not project.model_versions.exists()
    annotation_submit(assignment=lease, user=user, label="pos")

    champion = ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    unranked = [d for d in docs if d.pk not in order]
    PredictionFactory(document=unranked[0], model_version=champion, acquisition_score=0.9)
    after = assignment_next(project=project, annotator=user)
    assert (after.document_id, after.reason["strategy"]) == (unranked[0].pk, project.acquisition_strategy)
    assert coldstart.cold_start_order_refresh(project_id=project.pk) == {"skipped": "the project has a champion"}


def test_a_multi_label_project_takes_typiclust_and_random_clears_the_order(tiny_host):
    tiny_host.COLD_START_METHOD = "zero_shot"
    project, _ = make_project(task_type="multi_label")
    assert coldstart.cold_start_order_refresh(project_id=project.pk)["method"] == "typiclust"
    assert ranks(project)
    tiny_host.COLD_START_METHOD = "random"
    assert coldstart.cold_start_order_refresh(project_id=project.pk)["ranked"] == 0
    assert ranks(project) == []
    lease = assignment_next(project=project, annotator=UserFactory())
    assert lease.reason["strategy"] == "cold_start_random"


def test_holdout_documents_are_never_ranked(tiny_host):
    project, docs = make_project(20)
    Document.objects.filter(pk__in=[d.pk for d in docs[:10]]).update(split=Split.HOLDOUT)
    coldstart.cold_start_order_refresh(project_id=project.pk)
    assert set(ranks(project)) <= {d.pk for d in docs[10:]}
