"""Training guards: a promotion checks its champion is still the champion; a poison run stops after N starts."""

from __future__ import annotations

import pytest

from labeling.models import ModelStatus, ModelVersion, RunStatus, TrainingRun
from labeling.services.training.promotion import challenger_decide
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    project = f.ProjectFactory()
    first = f.ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION, artifact_path="a1")
    run = f.TrainingRunFactory(project=project, status=RunStatus.RUNNING)
    challenger = f.ModelVersionFactory(project=project, version=3, status=ModelStatus.CANDIDATE, artifact_path="a3")
    return project, first, run, challenger


def test_a_champion_changed_during_evaluation_rejects_the_challenger(setup, django_capture_on_commit_callbacks):
    project, first, run, challenger = setup
    # A manager promoted v2 by hand while the run compared its challenger with v1.
    ModelVersion.objects.filter(pk=first.pk).update(status=ModelStatus.RETIRED)
    second = f.ModelVersionFactory(project=project, version=2, status=ModelStatus.CHAMPION, artifact_path="a2")
    with django_capture_on_commit_callbacks():
        challenger_decide(run=run, challenger=challenger, promote=True, reason="beats v1", evaluated_against=first.pk)
    challenger.refresh_from_db()
    second.refresh_from_db()
    assert second.status == ModelStatus.CHAMPION
    assert challenger.status == ModelStatus.REJECTED
    done = TrainingRun.objects.get(pk=run.pk)
    assert not done.promoted and "champion changed to v2" in done.decision_reason


def test_the_same_champion_lets_the_gate_promote(setup, django_capture_on_commit_callbacks):
    project, first, run, challenger = setup
    with django_capture_on_commit_callbacks():
        challenger_decide(run=run, challenger=challenger, promote=True, reason="beats v1", evaluated_against=first.pk)
    challenger.refresh_from_db()
    assert challenger.status == ModelStatus.CHAMPION
    assert TrainingRun.objects.get(pk=run.pk).promoted


def test_a_run_that_killed_its_worker_n_times_is_failed_with_the_reason(settings):
    from labeling.services.training.runs import training_run_execute

    settings.TRAIN_MAX_ATTEMPTS = 3
    run = f.TrainingRunFactory(status=RunStatus.RUNNING, attempts=3)  # the lock is free: its worker died
    done = training_run_execute(run_id=run.pk)
    assert done.status == RunStatus.FAILED
    assert done.error == "failed after 3 attempts: the worker died each time"
