"""Model-side fixtures shared by the workers' tests: a session-wide embedding cache, a trained project.

Import the ones you need into your ``conftest.py`` (``from tests.support.fixtures import ...``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from labeling.models import Document, Project, RunTrigger, Split, TrainingRun
from labeling.selectors.models import OPEN_RUN_STATES
from labeling.services.training.runs import training_run_execute
from labeling.services.training.triggers import training_run_request
from tests.factories import ProjectFactory, UserFactory
from tests.support.celery_worker import wait_until
from tests.support.data import documents_create, label, rt_snippets


@pytest.fixture
def shared_embedding_cache(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Let this test reuse the session's encoder outputs (the per-encoder cache is content-keyed).

    Without it every test's fresh ARTIFACT_DIR starts with an empty cache and encodes again.
    """
    shared = tmp_path_factory.getbasetemp() / "shared-embeddings"
    shared.mkdir(exist_ok=True)
    link = Path(settings.ARTIFACT_DIR) / "embeddings"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(shared, target_is_directory=True)
    yield shared


def labeled_project(
    *, pool: int = 80, holdout: int = 30, unlabeled: int = 40, seed: int = 0, **project_fields: Any
) -> Project:
    """A fresh/rotten project: ``pool`` labeled, ``unlabeled`` unlabeled, ``holdout`` labeled holdout docs."""
    rows = rt_snippets(pool + holdout + unlabeled, seed=seed)
    project = ProjectFactory(retrain_after=project_fields.pop("retrain_after", 20), **project_fields)
    annotator = UserFactory()
    labeled_docs = documents_create(project, rows[:pool])
    documents_create(project, rows[pool : pool + unlabeled])
    holdout_docs = documents_create(project, rows[pool + unlabeled :], split=Split.HOLDOUT)
    label(labeled_docs + holdout_docs, annotator)
    return project


def train_now(project: Project) -> TrainingRun:
    """Request and execute a run in this process (what the TRAIN task does).

    The request also sends the run's TRAIN message: with a worker running, the worker may take the run
    lock first (seen under load), and this process then finds the lock held. The run is the same either
    way, so wait for the worker's result instead of failing.
    """
    run = training_run_request(project=project, trigger=RunTrigger.MANUAL)
    result = training_run_execute(run_id=run.pk)
    if result is None:
        result = wait_until(
            lambda: TrainingRun.objects.filter(pk=run.pk).exclude(status__in=OPEN_RUN_STATES).first(),
            timeout=240,
            what=f"the worker that took training run {run.pk} to finish it",
        )
    return result


def unlabeled(project: Project) -> list[Document]:
    return list(Document.objects.filter(project=project, annotations__isnull=True))
