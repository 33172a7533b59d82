"""Faults with real processes: a worker killed mid-import, a training run that kills its worker each
time, Redis down while labels arrive. Private Redis where the broker goes down (never the shared one).

Waiting uses generous timeouts as a safety net against hangs; nothing asserts a speed.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from labeling.models import Annotation, Document, ImportJob, RunStatus, RunTrigger, TrainingRun, text_hash
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next
from labeling.services.import_jobs import import_job_start
from labeling.services.training.triggers import training_run_request
from tests.factories import ProjectFactory, UserFactory
from tests.support.celery_worker import use_broker, wait_until
from tests.support.fixtures import labeled_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

BEAT_ENV = {"CELERY_RECONCILE_SECONDS": "2"}
ROWS = 30_000


def _csv(rows: int) -> bytes:
    lines = ["id,text"] + [f"r{i},Imported review number {i}: {'good' if i % 2 else 'bad'}." for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def test_a_worker_killed_mid_import_is_resumed_by_the_reconciliation(celery_worker_factory, settings, tmp_path):
    settings.UPLOAD_DIR = str(tmp_path / "uploads")
    worker = celery_worker_factory(queues="imports,scoring", env=BEAT_ENV, beat=True)
    project = ProjectFactory()
    job = import_job_start(project=project, filename="big.csv", chunks=[_csv(ROWS)], file_format=None,
                           text_col="text", external_id_col="id")
    upload = Path(job.file_path)
    wait_until(
        lambda: ImportJob.objects.filter(pk=job.pk, status=RunStatus.RUNNING, rows_total__gte=2_000,
                                         rows_total__lt=ROWS - 5_000).exists(),
        timeout=120, interval=0.05, what="the import to be part-way",
    )
    worker.kill()  # SIGKILL: no cleanup, the job row still says running
    assert ImportJob.objects.get(pk=job.pk).status == RunStatus.RUNNING
    worker.start()
    done = wait_until(
        lambda: ImportJob.objects.filter(pk=job.pk, status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED]).first(),
        timeout=180, what=lambda: f"the import to finish: {ImportJob.objects.filter(pk=job.pk).values().first()}",
    )
    assert done.status == RunStatus.SUCCEEDED, done.error
    assert done.attempts == 2 and "resumed" in done.detail
    assert Document.objects.filter(project=project).count() == ROWS  # nothing lost, nothing doubled
    assert done.rows_imported + done.rows_duplicate == ROWS
    assert not upload.exists()  # the finished job's upload is gone


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_training_run_that_kills_its_worker_fails_after_n_attempts(celery_worker_factory):
    # Prefork: the pool's parent sees its child die and re-delivers the message at once
    # (reject_on_worker_lost), which is what an out-of-memory kill does. No beat, so only the
    # re-delivery path acts (the beat's reconciliation would fail the orphaned run on its own).
    worker = celery_worker_factory(queues="training", pool="prefork", env={"TRAIN_MAX_ATTEMPTS": "3"})
    project = labeled_project(pool=30, holdout=0, unlabeled=0)
    run = training_run_request(project=project, trigger=RunTrigger.MANUAL)
    for attempt in (1, 2, 3):
        wait_until(
            lambda a=attempt: TrainingRun.objects.filter(pk=run.pk, attempts=a, status=RunStatus.RUNNING).exists(),
            timeout=120, interval=0.05, what=f"attempt {attempt} to start",
        )
        assert worker.proc is not None
        for child in _children(worker.proc.pid):
            os.kill(child, signal.SIGKILL)  # the child dies as an out-of-memory kill would
    failed = wait_until(
        lambda: TrainingRun.objects.filter(pk=run.pk, status=RunStatus.FAILED).first(),
        timeout=120, what=lambda: f"the run to fail: {TrainingRun.objects.filter(pk=run.pk).values().first()}",
    )
    assert failed.error == "failed after 3 attempts: the worker died each time"
    assert failed.attempts == 3 and failed.promoted is False


def test_labels_arriving_while_redis_is_down_are_stored_and_the_retrain_catches_up(
    celery_worker_factory, redis_server
):
    with use_broker(redis_server.url):
        celery_worker_factory(queues="training,scoring", env=BEAT_ENV, beat=True, broker_url=redis_server.url)
        project = ProjectFactory(retrain_after=5)
        Document.objects.bulk_create(
            Document(project=project, text=f"text {i}", content_hash=text_hash(f"text {i}")) for i in range(12)
        )
        annotator = UserFactory()
        redis_server.stop()  # the broker goes away while an annotator labels
        for i in range(10):
            lease = assignment_next(project=project, annotator=annotator)
            assert lease is not None
            annotation_submit(assignment=lease, user=annotator, label="fresh" if i % 2 else "rotten")
        assert Annotation.objects.filter(document__project=project).count() == 10  # every label stored
        assert not TrainingRun.objects.filter(project=project).exists()  # their retrain check was lost
        redis_server.start()  # empty: the retrain checks those labels sent were lost
        run = wait_until(
            lambda: TrainingRun.objects.filter(project=project).first(),
            timeout=120, what="the reconciliation to request the retrain the labels called for",
        )
        assert run.trigger == RunTrigger.THRESHOLD
