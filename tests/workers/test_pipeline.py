"""The whole loop in a real Celery worker, and what survives a killed worker or a restarted broker.

Real PostgreSQL (the test database, committed rows), real Redis, a real ``celery worker``
subprocess, the real packaged encoder on real rt-snippets reviews. Waiting uses generous timeouts
as a safety net against hangs; nothing asserts a speed.
"""

from __future__ import annotations

from typing import Any

import pytest

from labeling import roles
from labeling.models import (
    Document,
    ModelStatus,
    ModelVersion,
    Prediction,
    Project,
    RunStatus,
    RunTrigger,
    TrainingRun,
)
from labeling.selectors.models import champion_get
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.training.triggers import training_run_request
from tests.factories import ProjectFactory, UserFactory
from tests.support.celery_worker import use_broker, wait_until
from tests.support.data import documents_create, label, rt_snippets
from tests.support.fixtures import labeled_project, train_now

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.slow]

BEAT_ENV = {"CELERY_RECONCILE_SECONDS": "2"}


def fully_scored(project: Project) -> ModelVersion | None:
    """The champion, once every document of the project has exactly one prediction from it."""
    champion = champion_get(project_id=project.pk)
    if champion is None:
        return None
    total = Document.objects.filter(project=project).count()
    scored = Prediction.objects.filter(model_version=champion).count()  # unique per (document, model)
    return champion if scored == total else None


def runs_of(project: Project) -> str:
    """The project's runs and models, for a timeout message."""
    runs = [
        f"run {r.pk} {r.trigger} {r.status} {r.stage} {r.progress:.2f} {r.error!r} {r.decision_reason!r}"
        for r in TrainingRun.objects.filter(project=project).order_by("id")
    ]
    models = [f"v{m.version} {m.status}" for m in ModelVersion.objects.filter(project=project)]
    labeled = Document.objects.filter(project=project, annotations__isnull=False).values("split").distinct()
    return f"runs {runs}; models {models}; labeled splits {list(labeled)}"


def label_through_the_queue(project: Project, annotator: Any, n: int, truth: dict[str, str]) -> None:
    """An annotator takes ``n`` leases from the queue and labels each truthfully."""
    for _ in range(n):
        lease = assignment_next(project=project, annotator=annotator)
        assert lease is not None
        annotation_submit(assignment=lease, user=annotator, label=truth[lease.document.text])


@pytest.mark.usefixtures("shared_embedding_cache")
def test_ingest_score_label_retrain_promote_rescore_runs_by_itself(celery_worker_factory):
    celery_worker_factory(env=BEAT_ENV, beat=True)
    project = ProjectFactory(retrain_after=30, holdout_fraction=0.2, promotion_tolerance=0.05)
    rows = rt_snippets(300)
    truth = dict(rows)
    for start in range(0, len(rows), 100):  # ingestion enqueues scoring (no champion yet: nothing to do)
        document_bulk_create(project=project, items=[{"text": t} for t, _ in rows[start : start + 100]])
    annotator = UserFactory()
    membership_ensure(project=project, user=annotator, role=roles.ANNOTATOR)

    label_through_the_queue(project, annotator, 40, truth)  # cold start: random order, some holdout
    v1 = wait_until(
        lambda: fully_scored(project),
        timeout=240,
        what=lambda: f"the first champion to score every document: {runs_of(project)}",
    )
    assert v1.version == 1 and v1.train_label_count >= 30
    first_run = TrainingRun.objects.get(model_version=v1)
    assert first_run.trigger == RunTrigger.THRESHOLD and first_run.promoted

    label_through_the_queue(project, annotator, 40, truth)  # now served by uncertainty
    second = wait_until(
        lambda: (
            TrainingRun.objects.filter(project=project, status=RunStatus.SUCCEEDED, stage="done")
            .exclude(pk=first_run.pk)
            .first()
        ),
        timeout=240,
        what=lambda: f"the second run to finish: {runs_of(project)}",
    )
    champion = wait_until(
        lambda: fully_scored(project),
        timeout=240,
        what=lambda: f"re-scoring by the champion: {runs_of(project)}",
    )
    versions = list(ModelVersion.objects.filter(project=project).order_by("version"))
    assert [v.version for v in versions] == [1, 2]
    assert champion == (versions[1] if second.promoted else v1), second.decision_reason
    for v in versions:  # the learning curve has its points
        assert v.train_label_count > 0 and "holdout_count" in v.metrics and "calibration_split" in v.metrics
    assert versions[1].train_label_count > versions[0].train_label_count


def test_killing_the_worker_mid_scoring_leaves_every_document_with_one_prediction(celery_worker_factory):
    worker = celery_worker_factory(env={**BEAT_ENV, "SCORING_BATCH_SIZE": "8"}, beat=True)
    project = labeled_project(pool=30, holdout=0, unlabeled=200)
    run = train_now(project)  # here, in the test; its RESCORE_POOL message goes to the worker
    assert run.promoted
    total = Document.objects.filter(project=project).count()
    some = wait_until(
        lambda: 0 < Prediction.objects.filter(model_version=run.model_version).count() < total - 40,
        timeout=240,
        interval=0.05,
        what="the worker to be part-way through scoring",
    )
    worker.kill()
    scored_at_kill = Prediction.objects.filter(model_version=run.model_version).count()
    assert some and scored_at_kill < total
    worker.start()  # its message is unacknowledged; the beat's reconciliation resumes the work
    assert (
        wait_until(lambda: fully_scored(project), timeout=240, what="scoring to resume") == run.model_version
    )
    # the scorer that finds nothing left closes the promoting run's re-scoring stage
    wait_until(
        lambda: TrainingRun.objects.filter(pk=run.pk, stage="done", progress=1.0).exists(),
        timeout=60,
        what="the run's rescore stage to be marked done",
    )


def test_killing_the_worker_mid_training_fails_the_run_and_keeps_the_champion(celery_worker_factory):
    worker = celery_worker_factory(env=BEAT_ENV, beat=True)
    project = labeled_project(pool=30, holdout=0, unlabeled=0)
    champion = train_now(project).model_version
    label(documents_create(project, rt_snippets(300, seed=7)[:150]), UserFactory())  # not yet encoded
    run = training_run_request(project=project, trigger=RunTrigger.MANUAL)
    wait_until(
        lambda: TrainingRun.objects.filter(pk=run.pk, stage="train", status=RunStatus.RUNNING).exists(),
        timeout=240,
        interval=0.05,
        what="the worker to start training",
    )
    worker.kill()
    worker.start()
    failed = wait_until(
        lambda: TrainingRun.objects.filter(pk=run.pk, status=RunStatus.FAILED).first(),
        timeout=120,
        what="reconciliation to mark the run failed",
    )
    assert "worker executing this run stopped" in failed.error and failed.promoted is False
    assert champion_get(project_id=project.pk) == champion
    assert (
        not ModelVersion.objects.filter(project=project)
        .exclude(pk=champion.pk)
        .exclude(status=ModelStatus.REJECTED)
        .exists()
    )  # nothing half-trained is used

    retry = training_run_request(project=project, trigger=RunTrigger.MANUAL)  # by hand: runs cleanly
    done = wait_until(
        lambda: TrainingRun.objects.filter(pk=retry.pk, status__in=["succeeded", "failed"]).first(),
        timeout=240,
        what="the retried run",
    )
    assert done.status == RunStatus.SUCCEEDED, done.error
    assert done.labels_used == 180


@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_broker_restart_during_ingestion_is_healed_by_reconciliation(celery_worker_factory, redis_server):
    with use_broker(redis_server.url):
        celery_worker_factory(env=BEAT_ENV, beat=True, broker_url=redis_server.url)
        project = labeled_project(pool=30, holdout=0, unlabeled=0)
        train_now(project)
        rows = rt_snippets(300)[30:110]
        document_bulk_create(project=project, items=[{"text": t} for t, _ in rows[:20]])
        wait_until(lambda: fully_scored(project), timeout=240, what="scoring before the outage")

        redis_server.stop()  # the broker goes away: queued and unacknowledged messages are lost
        for i in range(20, 80, 20):
            # Ingestion still succeeds: the documents commit, only their scoring message is lost
            # (enqueue logs the broker error instead of failing a request whose data is stored).
            results = document_bulk_create(project=project, items=[{"text": t} for t, _ in rows[i : i + 20]])
            assert len(results) == 20
        redis_server.start()  # empty: nothing remembers those 60 documents but the database
        assert Document.objects.filter(project=project).count() == 110
        wait_until(lambda: fully_scored(project), timeout=240, what="reconciliation to score every document")
