"""Predictions, model versions and training runs over HTTP (the real training service and encoder)."""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from django.utils import timezone

from labeling.models import ModelStatus, RunStatus, TrainingRun
from labeling.roles import INGEST
from labeling.services.memberships import membership_ensure
from labeling.services.training.evaluation import metrics_compact
from modelsvc.calibration import evaluate_predictions
from tests.factories import ModelVersionFactory
from tests.support.fixtures import labeled_project, shared_embedding_cache, train_now  # noqa: F401

pytestmark = pytest.mark.django_db


def test_predict_before_any_model_is_a_clear_409(ingest_client, project):
    response = ingest_client.post(
        f"/api/v1/projects/{project.pk}/predict", {"texts": ["hello"]}, format="json"
    )
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "no_model"
    assert "no trained model" in error["message"]


def test_predict_refuses_more_characters_than_its_budget(ingest_client, project, settings):
    settings.PREDICT_MAX_CHARS = 1_000
    texts = ["x" * 600, "y" * 600]
    response = ingest_client.post(f"/api/v1/projects/{project.pk}/predict", {"texts": texts}, format="json")
    assert response.status_code == 400
    assert "1,200 characters" in response.json()["error"]["message"]


@pytest.mark.slow
def test_predict_models_and_runs_with_a_trained_champion(
    ingest_client, ingest_user, admin_client, shared_embedding_cache,  # noqa: F811
):
    project = labeled_project(pool=60, holdout=20, unlabeled=10)
    membership_ensure(project=project, user=ingest_user, role=INGEST)
    run = train_now(project)
    assert run.status == RunStatus.SUCCEEDED and run.promoted, run.decision_reason

    # Texts no other test sends (the embedding cache is shared across the session).
    tag = uuid.uuid4().hex[:8]
    texts = [f"A moving, beautifully acted film ({tag}).", f"Tedious, lifeless and far too long ({tag})."]
    response = ingest_client.post(f"/api/v1/projects/{project.pk}/predict", {"texts": texts}, format="json")
    assert response.status_code == 200, response.content
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    for p in predictions:
        assert p["label"] in ("fresh", "rotten")
        assert 0.5 <= p["confidence"] <= 1.0
        assert sum(p["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert p["recommendation"] in ("auto_accept", "review", "escalate")
        assert p["mutual_info"] >= 0 and p["entropy"] >= p["mutual_info"] - 1e-6
    from labeling.services import modeling

    champion = modeling.classifier_for(project.model_versions.get(version=1))
    cache = modeling.embedding_cache_for(modeling.classifier_encoder(champion).encoder_id)
    assert cache.get_many(champion.encoder_id, texts) == {}  # ad-hoc texts never enter the cache

    models = admin_client.get(f"/api/v1/projects/{project.pk}/models/").json()
    assert [(m["version"], m["status"]) for m in models] == [(1, "champion")]
    assert models[0]["train_label_count"] == 60
    assert "accuracy" in models[0]["metrics"]
    # 20 holdout labels: the figures come with their intervals and n, and say they are too few to judge.
    figures = models[0]["figures"]
    assert figures["n"] == 20 and figures["too_small"] is True and figures["min_n"] == 100
    assert figures["accuracy_interval"][0] <= figures["accuracy"] <= figures["accuracy_interval"][1]
    assert figures["ece_interval"][0] <= figures["ece_interval"][1]
    # The pool's temperature is applied only if it lowered the cross-fitted (out-of-fold) NLL.
    choice = models[0]["calibration"]["temperature_choice"]
    assert choice["chosen"] in ("fitted", "baseline")
    assert (choice["chosen"] == "fitted") == (choice["nll_cross_fitted"] < choice["nll_baseline"])
    assert models[0]["calibration"]["temperature"] == choice["temperature"]

    runs = admin_client.get(f"/api/v1/projects/{project.pk}/training-runs/").json()
    assert runs[0]["status"] == "succeeded" and runs[0]["model_version"] == 1 and runs[0]["stage"]
    assert runs[0]["figures"] == figures


def test_models_and_runs_carry_intervals_and_n_with_their_figures(admin_client, project):
    """A figure on 10 items is too few to judge; on 400 it is not; an old version gets a Wilson interval."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 400)
    probs = np.stack([p, 1 - p], axis=1)
    y = (rng.random(400) >= p).astype(int)
    few = evaluate_predictions(probs[:10], probs[:10], y[:10], {})
    many = evaluate_predictions(probs, probs, y, {})
    small = ModelVersionFactory(project=project, version=1, status=ModelStatus.RETIRED,
                                metrics={**metrics_compact(few), "holdout_count": 10})
    ModelVersionFactory(project=project, version=2, status=ModelStatus.CHAMPION,
                        metrics={**metrics_compact(many), "holdout_count": 400})
    ModelVersionFactory(project=project, version=3, status=ModelStatus.REJECTED,
                        metrics={"accuracy": 0.8, "ece": 0.05, "holdout_count": 50})
    TrainingRun.objects.create(project=project, status=RunStatus.SUCCEEDED, model_version=small)
    TrainingRun.objects.create(project=project, status=RunStatus.FAILED, error="boom")

    models = {m["version"]: m["figures"] for m in admin_client.get(f"/api/v1/projects/{project.pk}/models/").json()}
    assert models[1]["n"] == 10 and models[1]["too_small"] is True
    assert models[1]["accuracy_interval"][1] - models[1]["accuracy_interval"][0] > 0.3
    assert models[1]["ece_interval"] == few["intervals"]["ece"]
    assert models[1]["ece_noise_floor"] > 0.1 and models[3]["ece_noise_floor"] is None
    assert models[2]["n"] == 400 and models[2]["too_small"] is False
    assert models[2]["accuracy_interval"][1] - models[2]["accuracy_interval"][0] < 0.1
    assert models[3]["n"] == 50 and models[3]["too_small"] is True and models[3]["ece_interval"] is None
    assert 0.66 < models[3]["accuracy_interval"][0] < 0.7  # Wilson 40/50, from the stored count
    runs = admin_client.get(f"/api/v1/projects/{project.pk}/training-runs/").json()
    assert runs[0]["figures"] is None  # the failed run has no model
    assert runs[1]["figures"] == models[1]


def test_retrain_now_queues_one_run_and_coalesces_a_second_request(
    admin_client, project, django_capture_on_commit_callbacks
):
    url = f"/api/v1/projects/{project.pk}/training-runs/"
    with django_capture_on_commit_callbacks() as sent:
        first = admin_client.post(url)
    assert first.status_code == 202
    assert first.json()["status"] == "queued" and first.json()["trigger"] == "manual"
    assert len(sent) == 1  # the TRAIN task, after commit
    second = admin_client.post(url)
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["coalesced_triggers"] == 1
    assert TrainingRun.objects.filter(project=project).count() == 1


def test_promote_and_rollback_refusals_are_409(admin_client, project):
    candidate = ModelVersionFactory(
        project=project, version=1, status=ModelStatus.CANDIDATE, artifact_path=""
    )
    promote = admin_client.post(f"/api/v1/projects/{project.pk}/models/{candidate.pk}/promote")
    assert promote.status_code == 409
    assert "artifact" in promote.json()["error"]["message"]
    rollback = admin_client.post(f"/api/v1/projects/{project.pk}/models/rollback")
    assert rollback.status_code == 409
    assert rollback.json()["error"]["code"] == "conflict"


def test_promote_by_hand_then_roll_back(admin_client, project):
    old = ModelVersionFactory(
        project=project,
        version=1,
        status=ModelStatus.CHAMPION,
        artifact_path="a/1",
        promoted_at=timezone.now(),
    )
    new = ModelVersionFactory(project=project, version=2, status=ModelStatus.CANDIDATE, artifact_path="a/2")
    promoted = admin_client.post(f"/api/v1/projects/{project.pk}/models/{new.pk}/promote")
    assert promoted.status_code == 200 and promoted.json()["status"] == "champion"
    old.refresh_from_db()
    assert old.status != ModelStatus.CHAMPION
    rolled = admin_client.post(f"/api/v1/projects/{project.pk}/models/rollback")
    assert rolled.status_code == 200, rolled.content
    assert rolled.json()["version"] == 1 and rolled.json()["status"] == "champion"
