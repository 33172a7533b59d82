"""Import jobs are repaired: a dead worker's job resumes (or fails after N starts), a lost message is
resent, and uploaded files are deleted once their job is finished or left over."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from labeling.models import Document, ImportJob, RunStatus
from labeling.services import import_jobs
from tests.factories import ImportJobFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def upload(settings, tmp_path: Path) -> Path:
    settings.UPLOAD_DIR = str(tmp_path / "uploads")
    path = tmp_path / "uploads" / "1" / "abc.csv"
    path.parent.mkdir(parents=True)
    path.write_text("text\nfirst row\nsecond row\n")
    return path


def test_a_finished_job_deletes_its_upload(upload):
    job = import_jobs.import_job_run(ImportJobFactory(file_path=str(upload)).pk)
    assert job.status == RunStatus.SUCCEEDED and job.attempts == 1
    assert not upload.exists()


def test_a_failed_job_deletes_its_upload_too(upload):
    job = import_jobs.import_job_run(ImportJobFactory(file_path=str(upload), text_col="body").pk)
    assert job.status == RunStatus.FAILED and "'body'" in job.error
    assert not upload.exists()


def test_a_job_left_running_by_a_dead_worker_is_resumed(upload, django_capture_on_commit_callbacks):
    job = ImportJobFactory(file_path=str(upload), status=RunStatus.RUNNING, attempts=1)
    with django_capture_on_commit_callbacks() as sent:
        report = import_jobs.imports_reconcile()
    assert report["imports_resumed"] == [job.pk] and len(sent) == 1
    assert ImportJob.objects.get(pk=job.pk).status == RunStatus.QUEUED
    done = import_jobs.import_job_run(job.pk)
    assert done.status == RunStatus.SUCCEEDED and done.attempts == 2
    assert "resumed" in done.detail
    assert Document.objects.filter(project=job.project).count() == 2


def test_a_job_that_killed_its_worker_n_times_fails_with_the_reason(upload):
    job = ImportJobFactory(file_path=str(upload), status=RunStatus.QUEUED,
                           attempts=import_jobs.IMPORT_MAX_ATTEMPTS)
    done = import_jobs.import_job_run(job.pk)
    assert done.status == RunStatus.FAILED
    assert done.error == f"failed after {import_jobs.IMPORT_MAX_ATTEMPTS} attempts: the worker died each time"
    assert not upload.exists()


def test_a_queued_job_whose_message_was_lost_is_sent_again(upload, settings, django_capture_on_commit_callbacks):
    fresh = ImportJobFactory(file_path=str(upload))
    stale = ImportJobFactory(file_path=str(upload), queued_at=timezone.now() - timedelta(hours=1))
    with django_capture_on_commit_callbacks() as sent:
        report = import_jobs.imports_reconcile()
    assert report["imports_resent"] == [stale.pk] and len(sent) == 1
    assert ImportJob.objects.get(pk=stale.pk).queued_at > timezone.now() - timedelta(minutes=1)
    assert fresh.pk not in report["imports_resent"]


def test_the_sweep_deletes_leftover_uploads_only(upload, settings):
    leftover = upload.with_name("left.csv")
    leftover.write_text("text\nx\n")
    old = time.time() - 3600
    os.utime(leftover, (old, old))
    os.utime(upload, (old, old))
    ImportJobFactory(file_path=str(upload))  # still queued: its file stays
    assert import_jobs.uploads_sweep(older_than=timezone.now() - timedelta(minutes=5)) == 1
    assert upload.exists() and not leftover.exists()
