"""A labeled file imported into an empty project trains its first model at once: a real Celery worker
imports it, the import queues the first run, the run trains, and a champion appears.

Real PostgreSQL (committed rows), real Redis, a real ``celery worker`` subprocess, the packaged encoder
on real rt-snippets reviews. Waiting uses generous timeouts as a safety net; nothing asserts a speed.
"""

from __future__ import annotations

import csv
import io

import pytest

from labeling.models import Annotation, AnnotationSource, ImportJob, LabelsAs, RunStatus, RunTrigger, TrainingRun
from labeling.selectors.models import champion_get
from labeling.services.import_jobs import import_job_start
from tests.factories import ProjectFactory
from tests.support.celery_worker import wait_until
from tests.support.data import rt_snippets

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e, pytest.mark.slow]


def _labeled_csv(n: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label", "who"])
    writer.writerows((text, gold, "legacy-tool") for text, gold in rt_snippets(n, seed=7))
    return out.getvalue().encode()


@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_labeled_file_in_an_empty_project_trains_its_first_model(celery_worker, settings, tmp_path):
    settings.UPLOAD_DIR = str(tmp_path / "uploads")
    project = ProjectFactory(retrain_after=20)
    job = import_job_start(project=project, filename="labeled.csv", chunks=[_labeled_csv(40)], file_format=None,
                           text_col="text", label_col="label", labels_as=LabelsAs.TRAINING, source_col="who")

    def state() -> str:
        runs = list(TrainingRun.objects.filter(project=project).values("status", "stage", "error"))
        return f"job {ImportJob.objects.filter(pk=job.pk).values('status', 'error').first()}; runs {runs}"

    champion = wait_until(lambda: champion_get(project_id=project.pk), timeout=600,
                          what=lambda: f"the first champion: {state()}")

    done = ImportJob.objects.get(pk=job.pk)
    assert done.status == RunStatus.SUCCEEDED and done.rows_labeled >= 20
    run = TrainingRun.objects.get(project=project)  # one run, queued by the import itself
    assert run.trigger == RunTrigger.THRESHOLD and run.status == RunStatus.SUCCEEDED
    assert run.model_version == champion
    imported = Annotation.objects.filter(document__project=project, source=AnnotationSource.IMPORT)
    assert imported.count() == done.rows_labeled
    assert set(imported.values_list("import_source", flat=True)) == {"legacy-tool"}
