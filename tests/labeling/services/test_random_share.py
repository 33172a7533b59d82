"""A random share of the pool: leases drawn at random once a model ranks the pool, and every randomly drawn
label in the temperature fit beside the blind holdout (``modelsvc.model.CalibrationSet``)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.models import Assignment, AssignmentState, ModelStatus, Project, Split
from labeling.selectors.models import champion_get
from labeling.selectors.queue import COLD_START_RANDOM, RANDOM_SHARE, random_draws
from labeling.services import modeling
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next
from labeling.services.documents import document_bulk_create
from labeling.services.projects import project_create
from modelsvc.artifacts import load_classifier
from modelsvc.holdout import MIN_HOLDOUT_FOR_CALIBRATION
from tests.factories import AssignmentFactory, ModelVersionFactory, PredictionFactory, UserFactory
from tests.support.fixtures import labeled_project, shared_embedding_cache, train_now  # noqa: F401

pytestmark = pytest.mark.django_db


def _ranked_project(n: int, **policy) -> tuple[Project, list]:
    project = project_create(name=f"p{policy}", labels=["a", "b"], holdout_fraction=0.0, holdout_interleave=0.0,
                             **policy)
    docs = [d for d, _ in document_bulk_create(project=project, items=[{"text": f"doc {i}"} for i in range(n)])]
    champion = ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    for i, doc in enumerate(docs):  # the strategy's ranking: highest score first
        PredictionFactory(document=doc, model_version=champion, acquisition_score=float(n - i))
    return project, docs


def _strategies(project: Project, leases: int, user) -> list[str]:
    out = []
    for _ in range(leases):
        lease = assignment_next(project=project, annotator=user)
        out.append(lease.reason["strategy"])
        annotation_submit(assignment=lease, user=user, label="a")
    return out


def test_a_share_of_pool_leases_is_drawn_at_random_and_seeded():
    user = UserFactory()
    projects = [_ranked_project(120, random_share=0.5, seed=4, description=str(r))[0] for r in (0, 1)]
    runs = [_strategies(project, 40, user) for project in projects]
    assert runs[0] == runs[1]  # seeded per (project seed, annotator, lease number)
    drawn = runs[0].count(RANDOM_SHARE)
    assert 8 <= drawn <= 32 and runs[0].count("diverse") == 40 - drawn


def test_without_a_share_the_strategy_serves_every_pool_lease_in_its_order():
    project, docs = _ranked_project(30)
    assert project.random_share == 0.0
    user = UserFactory()
    for doc in docs[:10]:
        lease = assignment_next(project=project, annotator=user)
        assert (lease.document_id, lease.reason["strategy"]) == (doc.pk, "diverse")
        annotation_submit(assignment=lease, user=user, label="a")


def test_random_draws_are_the_labeled_random_share_leases_only():
    project, docs = _ranked_project(5)
    done = {"state": AssignmentState.DONE}
    AssignmentFactory(document=docs[0], reason={"strategy": RANDOM_SHARE, "model_version": 1}, **done)
    # the random cold start did not pass its rule for the temperature fit (docs/REPLAY.md)
    AssignmentFactory(document=docs[1], reason={"strategy": COLD_START_RANDOM, "model_version": None}, **done)
    AssignmentFactory(document=docs[2], reason={"strategy": COLD_START_RANDOM, "model_version": 1}, **done)
    AssignmentFactory(document=docs[3], reason={"strategy": "diverse", "model_version": 1}, **done)
    AssignmentFactory(document=docs[4], reason={"strategy": RANDOM_SHARE, "model_version": 1})  # leased, not labeled
    assert random_draws(document_ids=[d.pk for d in docs]) == {docs[0].pk}


@pytest.mark.parametrize("value", [-0.1, 0.6, "lots"])
def test_a_share_out_of_range_is_refused_naming_the_field_and_nothing_changes(value):
    admin = UserFactory(is_staff=True)
    project = project_create(name="p", labels=["a", "b"])
    client = APIClient()
    client.force_authenticate(admin)
    response = client.patch(f"/api/v1/projects/{project.pk}/", {"random_share": value}, format="json")
    assert response.status_code == 400 and "random_share" in response.json()["error"]["fields"]
    project.refresh_from_db()
    assert project.random_share == 0.0
    ok = client.patch(f"/api/v1/projects/{project.pk}/", {"random_share": 0.2}, format="json")
    assert ok.status_code == 200 and ok.json()["random_share"] == 0.2


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_randomly_drawn_labels_join_a_small_holdout_in_the_temperature_fit_and_the_artifact():
    small = MIN_HOLDOUT_FOR_CALIBRATION - 10  # alone too few to fit a temperature
    project = labeled_project(pool=80, holdout=small, unlabeled=0)
    pool = list(project.documents.filter(split=Split.POOL).order_by("id"))
    annotator = UserFactory()
    for doc in pool[:30]:
        AssignmentFactory(document=doc, annotator=annotator, state=AssignmentState.DONE,
                          reason={"strategy": RANDOM_SHARE, "model_version": 1})
    train_now(project)
    champion = champion_get(project_id=project.pk)
    assert champion is not None
    calibration = champion.calibration
    assert calibration["n_temperature_holdout"] == small and calibration["n_temperature_random_pool"] == 30
    assert "temperature_choice_holdout" in calibration  # the fit ran on 20 holdout + 30 random draws
    artifact = load_classifier(modeling.storage.artifact_local(champion.artifact_path))
    assert artifact.calibration_set is not None and len(artifact.calibration_set) == 30
    assert artifact.calibration_set.logits.shape[2] == 2
    assert Assignment.objects.filter(document__in=pool[:30], state=AssignmentState.DONE).count() == 30
