"""Retrain and recalibrate: triggers, single flight, the promotion gate, failures, promote / rollback.

Real PostgreSQL, the real packaged encoder, real rt-snippets labels; the TRAIN task's work runs in
this process (the worker tests run it in a real Celery worker).
"""

from __future__ import annotations

import io
import itertools

import psycopg
import pytest
import torch
from django.core.management import CommandError, call_command
from django.db import connection

from labeling.models import ModelStatus, ModelVersion, Project, RunStatus, RunTrigger, TrainingRun
from labeling.selectors.models import champion_get
from labeling.services import modeling
from labeling.services.errors import PromotionError, RollbackError, RunLockedError
from labeling.services.training.label_issues import label_issues_for_review
from labeling.services.training.promotion import model_version_promote, model_version_rollback
from labeling.services.training.reconciliation import training_reconcile
from labeling.services.training.runs import training_run_execute
from labeling.services.training.triggers import project_check_retrain, retrain_due, training_run_request
from modelsvc import finetune
from modelsvc.artifacts import load_classifier
from modelsvc.promotion import promotion_decision
from tests.factories import ModelVersionFactory, ProjectFactory, TrainingRunFactory, UserFactory
from tests.support.celery_worker import database_url, wait_until
from tests.support.data import documents_create, label, rt_snippets
from tests.support.fixtures import labeled_project, shared_embedding_cache, train_now  # noqa: F401

pytestmark = [pytest.mark.django_db]


def test_a_second_trigger_is_counted_on_the_open_run(django_capture_on_commit_callbacks) -> None:
    project = ProjectFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        first = training_run_request(project=project, trigger=RunTrigger.THRESHOLD)
        second = training_run_request(project=project, trigger=RunTrigger.MANUAL)
    assert second.pk == first.pk
    assert second.coalesced_triggers == 1
    assert TrainingRun.objects.filter(project=project).count() == 1
    assert len(callbacks) == 1  # one TRAIN message, not two


def test_first_model_waits_for_enough_labels_of_two_classes() -> None:
    project = ProjectFactory(retrain_after=6)
    annotator = UserFactory()
    rows = rt_snippets(20)
    docs = documents_create(project, [r for r in rows if r[1] == "fresh"][:6])
    label(docs[:5], annotator)
    assert retrain_due(project) == (False, "5 of the 6 labels a first model needs")
    label(docs[5:], annotator)
    due, reason = retrain_due(project)
    assert not due and "single class" in reason
    label(documents_create(project, [r for r in rows if r[1] == "rotten"][:1]), annotator)
    assert retrain_due(project)[0]
    assert project_check_retrain(project_id=project.pk) is not None


def test_later_retrains_count_labels_since_the_latest_model() -> None:
    project = ProjectFactory(retrain_after=3)
    annotator = UserFactory()
    docs = documents_create(project, rt_snippets(12))
    label(docs[:8], annotator)
    ModelVersionFactory(project=project, status=ModelStatus.REJECTED, train_label_count=6, version=1)
    assert retrain_due(project) == (False, "2 new labels since v1 (retrain after 3)")
    label(docs[8:9], annotator)
    assert retrain_due(project)[0]
    # the beat's nightly rule retrains on any new label
    ModelVersionFactory(project=project, status=ModelStatus.CHAMPION, train_label_count=8, version=2)
    assert retrain_due(project, any_new=True)[0]
    assert not retrain_due(project)[0]


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_first_model_is_promoted_and_a_worse_challenger_is_rejected() -> None:
    project = labeled_project(pool=80, holdout=30, unlabeled=0, retrain_after=10)
    Project.objects.filter(pk=project.pk).update(noise_review_share=0.2, noise_hold_flagged=True)
    project.refresh_from_db()
    run = train_now(project)
    assert run.status == RunStatus.SUCCEEDED and run.promoted, run.error
    assert run.decision_reason.startswith("first model")
    champion = champion_get(project_id=project.pk)
    assert champion is not None and champion == run.model_version
    assert champion.train_label_count == 80 and run.labels_used == 80
    metrics = champion.metrics
    assert metrics["holdout_count"] == 30
    for key in (
        "accuracy",
        "macro_f1",
        "ece",
        "ece_uncalibrated",
        "nll",
        "brier",
        "auroc_error",
        "reliability",
    ):
        assert key in metrics, key
    assert metrics["accuracy"] > 0.5  # 80 labels of real reviews: better than chance (about 0.66 on 300 docs)
    assert load_classifier(modeling.storage.artifact_local(champion.artifact_path)).label_names == [
        "fresh",
        "rotten",
    ]
    assert len(champion.calibration["map"]["components"]) == 2
    # The run's training labels ranked by how likely they are wrong (out-of-fold, confident learning):
    # at most the project's share (here 20%) of the 80 pool labels, most suspect first, and only those
    # cleanlab counts as issues, recorded for review.
    issues = metrics["label_issues"]
    assert issues["n_ranked"] == 80 and issues["share"] == 0.2
    assert len(issues["document_ids"]) == min(16, issues["n_issues"]) == issues["opened_for_review"] >= 1
    flagged = label_issues_for_review(model_version=champion)
    assert {doc_id for doc_id, _ in flagged} <= set(project.documents.filter(split="pool").values_list("id", flat=True))
    assert [score for _, score in flagged] == sorted(score for _, score in flagged)
    # where the encoder ran is on the record ("cuda (<GPU name>)" on a GPU worker)
    gpu = torch.cuda.is_available()
    assert champion.calibration["device"] == (f"cuda ({torch.cuda.get_device_name(0)})" if gpu else "cpu")

    # Deliberately bad labels: two more annotators contradict every pool label, so the majority
    # label is flipped; the challenger learns the opposite and must lose on the holdout.
    pool_docs = [d for d in project.documents.filter(split="pool")]
    label(pool_docs, UserFactory(), flip=True)
    label(pool_docs, UserFactory(), flip=True)
    bad = train_now(project)
    assert bad.status == RunStatus.SUCCEEDED and bad.promoted is False, bad.decision_reason
    # the first run's flags are held back until a reviewer decides them
    assert bad.labels_used == 80 - issues["opened_for_review"]
    assert "rejected" in bad.decision_reason
    challenger = ModelVersion.objects.get(pk=bad.model_version_id)
    assert challenger.status == ModelStatus.REJECTED
    assert challenger.metrics["accuracy"] < challenger.metrics["champion_holdout_accuracy"]
    # the labels still waiting for review use up the share first
    second = challenger.metrics["label_issues"]
    assert second["n_pending"] == issues["opened_for_review"] and second["n_ranked"] == 80 - second["n_pending"]
    assert len(second["document_ids"]) <= 16 - second["n_pending"]
    assert champion_get(project_id=project.pk) == champion  # untouched


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_by_default_flagged_labels_keep_training_and_are_not_flagged_again_while_they_wait() -> None:
    project = labeled_project(pool=80, holdout=30, unlabeled=0, retrain_after=10, name="flags train")
    Project.objects.filter(pk=project.pk).update(noise_review_share=0.2)
    project.refresh_from_db()
    assert project.noise_hold_flagged is False
    first = train_now(project)
    assert first.status == RunStatus.SUCCEEDED, first.error
    issues = ModelVersion.objects.get(pk=first.model_version_id).metrics["label_issues"]
    assert issues["opened_for_review"] >= 1
    # two more annotators contradict every pool label, so there is something new to train on
    pool_docs = [d for d in project.documents.filter(split="pool")]
    label(pool_docs, UserFactory(), flip=True)
    label(pool_docs, UserFactory(), flip=True)
    second = train_now(project)
    assert second.status == RunStatus.SUCCEEDED, second.error
    assert second.labels_used == 80  # the flags still waiting for a reviewer train
    again = ModelVersion.objects.get(pk=second.model_version_id).metrics["label_issues"]
    # ... but are neither ranked nor flagged again, and use up the share first
    assert again["n_pending"] == issues["opened_for_review"] and again["n_ranked"] == 80 - again["n_pending"]
    assert not set(again["document_ids"]) & set(issues["document_ids"])
    assert len(again["document_ids"]) <= 16 - again["n_pending"]


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_project_that_fine_tunes_deploys_its_tuned_layers(monkeypatch) -> None:
    # Whether a joint epoch beats the frozen probe on 60 labels is a coin toss: let the stopping rule
    # see a falling validation loss (the gradient steps, the refit and everything after are real).
    losses = itertools.count()
    monkeypatch.setattr(finetune, "_val_loss", lambda *args: 1.0 - 0.01 * next(losses))
    project = labeled_project(pool=60, holdout=30, unlabeled=10, retrain_after=10, fine_tune="top1")
    run = train_now(project)
    assert run.status == RunStatus.SUCCEEDED and run.promoted, run.error
    champion = champion_get(project_id=project.pk)
    assert champion is not None
    classifier = modeling.classifier_for(champion)
    assert classifier.tuned is not None and "+top1@" in classifier.encoder_id
    assert classifier.calibration["fine_tune"]["refit"]["n"] == 60
    # the holdout temperature was fitted on vectors of the tuned encoder, not the frozen one
    assert classifier.calibration["temperature_source"] == "holdout"
    assert classifier.calibration["n_temperature_holdout"] == 30
    assert champion.metrics["holdout_count"] == 30


def test_a_failing_stage_marks_the_run_failed_and_keeps_the_champion(settings) -> None:
    project = labeled_project(pool=6, holdout=0, unlabeled=0)
    champion = ModelVersionFactory(project=project, status=ModelStatus.CHAMPION, version=1)
    settings.MODEL_ENCODER = "/nonexistent/encoder"  # an operator's typo in MODEL_ENCODER
    run = train_now(project)
    assert run.status == RunStatus.FAILED
    assert "stage train" in run.error and "/nonexistent/encoder" in run.error
    assert run.finished_at is not None
    assert champion_get(project_id=project.pk) == champion
    assert ModelVersion.objects.filter(project=project).count() == 1
    # automatic triggers back off after a failure instead of failing on every label
    assert project_check_retrain(project_id=project.pk) is None


def test_single_class_labels_fail_with_a_clear_error() -> None:
    project = ProjectFactory()
    docs = documents_create(project, [r for r in rt_snippets(10) if r[1] == "fresh"])
    label(docs, UserFactory())
    run = train_now(project)
    assert run.status == RunStatus.FAILED and "fewer than 2 classes" in run.error


def test_a_message_for_a_finished_run_does_nothing() -> None:
    run = TrainingRunFactory(status=RunStatus.SUCCEEDED, stage="done")
    assert training_run_execute(run_id=run.pk) == run
    run.refresh_from_db()
    assert run.stage == "done"


def _hold_run_lock(run_id: int) -> psycopg.Connection:
    """Another session holding the run lock, as a live worker executing the run does."""
    other = psycopg.connect(database_url().replace("postgres://", "postgresql://"), autocommit=True)
    other.execute("SELECT pg_advisory_lock(%s, %s)", [modeling.LOCK_TRAINING, run_id])
    return other


def test_reconcile_fails_a_run_whose_worker_died_but_not_a_live_one() -> None:
    assert connection.vendor == "postgresql"
    run = TrainingRunFactory(status=RunStatus.RUNNING, stage="train")
    holder = _hold_run_lock(run.pk)
    try:
        assert training_reconcile()["runs_failed"] == []
        assert training_run_execute(run_id=run.pk) is None  # a live worker has it
        run.refresh_from_db()
        assert run.status == RunStatus.RUNNING
    finally:
        holder.close()  # the worker dies: PostgreSQL drops its lock once it notices
    wait_until(
        lambda: modeling.lock_is_free(modeling.LOCK_TRAINING, run.pk), timeout=30, what="the lock release"
    )
    assert training_reconcile()["runs_failed"] == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "worker executing this run stopped" in run.error


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_redelivered_message_restarts_an_orphaned_run_cleanly() -> None:
    project = labeled_project(pool=40, holdout=0, unlabeled=0)
    stale = ModelVersionFactory(project=project, status=ModelStatus.CANDIDATE, version=1)
    run = TrainingRunFactory(project=project, status=RunStatus.RUNNING, stage="evaluate", model_version=stale)
    result = training_run_execute(run_id=run.pk)
    assert result is not None and result.status == RunStatus.SUCCEEDED and result.promoted
    stale.refresh_from_db()
    assert stale.status == ModelStatus.REJECTED and "restarted" in stale.decision_reason
    assert champion_get(project_id=project.pk).version == 2


def test_promote_by_hand_and_roll_back(django_capture_on_commit_callbacks) -> None:
    project = ProjectFactory()
    v1 = ModelVersionFactory(project=project, version=1, status=ModelStatus.CANDIDATE, artifact_path="/a/1")
    v2 = ModelVersionFactory(project=project, version=2, status=ModelStatus.REJECTED, artifact_path="/a/2")
    with django_capture_on_commit_callbacks():
        model_version_promote(model_version=v1)
    rescoring_v1 = TrainingRunFactory(
        project=project, status=RunStatus.SUCCEEDED, stage="rescore", model_version=v1
    )
    with django_capture_on_commit_callbacks():
        model_version_promote(model_version=v2)  # admin overrides a rejection
    rescoring_v1.refresh_from_db()
    assert rescoring_v1.stage == "done"  # v1 is no longer served: its re-scoring is over
    v1.refresh_from_db()
    assert v1.status == ModelStatus.RETIRED and champion_get(project_id=project.pk) == v2
    with django_capture_on_commit_callbacks():
        back = model_version_rollback(project=project)
    assert back == v1 and back.status == ModelStatus.CHAMPION
    v2.refresh_from_db()
    assert v2.status == ModelStatus.REJECTED and "rolled back to v1" in v2.decision_reason
    with pytest.raises(RollbackError, match="only model"):
        model_version_rollback(project=project)
    with pytest.raises(PromotionError):
        model_version_promote(model_version=ModelVersionFactory(project=project, version=3))


@pytest.mark.parametrize(
    ("kwargs", "promote", "words"),
    [
        ({"has_champion": False}, True, "first model"),
        ({"challenger_accuracy": 0.795, "champion_accuracy": 0.80}, True, "promoted"),
        ({"challenger_accuracy": 0.78, "champion_accuracy": 0.80}, False, "rejected"),
        # 2 points worse on 50 documents, 6 vs 5 discordant: still rejected, and the reason says why it is weak
        ({"challenger_accuracy": 0.78, "champion_accuracy": 0.80, "champion_only_correct": 6,
          "challenger_only_correct": 5}, False, "label more holdout documents"),
        # 22 points worse, 12 vs 1 discordant: a real loss
        ({"challenger_accuracy": 0.58, "champion_accuracy": 0.80, "champion_only_correct": 12,
          "challenger_only_correct": 1}, False, "significantly worse"),
        ({"holdout_count": 9}, True, "too small"),
        ({"holdout_classes": 1, "challenger_calibration_accuracy": 0.6}, False, "calibration-split accuracy"),
        ({"holdout_count": 3, "champion_calibration_accuracy": None}, True, "newer model has more labels"),
    ],
)
def test_promotion_rule(kwargs: dict, promote: bool, words: str) -> None:  # type: ignore[type-arg]
    args = {
        "has_champion": True,
        "holdout_count": 50,
        "holdout_classes": 2,
        "challenger_accuracy": 0.8,
        "champion_accuracy": 0.8,
        "challenger_calibration_accuracy": 0.8,
        "champion_calibration_accuracy": 0.8,
        "tolerance": 0.01,
        **kwargs,
    }
    ok, reason = promotion_decision(**args)
    assert ok is promote and words in reason


@pytest.mark.django_db(transaction=True)
def test_a_run_row_locked_for_a_moment_makes_the_train_task_retry() -> None:
    run = TrainingRunFactory()
    other = psycopg.connect(database_url().replace("postgres://", "postgresql://"))
    try:
        other.execute("SELECT id FROM labeling_trainingrun WHERE id = %s FOR UPDATE", [run.pk])
        with pytest.raises(RunLockedError):  # TRAIN retries this one, instead of dropping the run
            training_run_execute(run_id=run.pk)
    finally:
        other.close()
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_retrain_command_sync_prints_stages_decision_and_rescores() -> None:
    project = labeled_project(pool=30, holdout=10, unlabeled=10, name="reviews")
    out = io.StringIO()
    call_command("retrain", "reviews", "--sync", stdout=out)
    text = out.getvalue()
    assert "decision: first model" in text
    assert f"rescore: {project.documents.count()} documents" in text
    assert "v1 champion: 30 labels" in text and "run " in text and "succeeded" in text
    run = TrainingRun.objects.get(project=project)
    assert run.trigger == RunTrigger.MANUAL and run.stage == "done"
    with pytest.raises(CommandError, match="no project named"):
        call_command("retrain", "no such project", stdout=io.StringIO())


@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_hybrid_project_trains_saves_and_scores_with_its_tfidf_block() -> None:
    project = labeled_project(pool=60, holdout=30, unlabeled=40, retrain_after=10, model_features="hybrid")
    run = train_now(project)
    assert run.status == RunStatus.SUCCEEDED and run.promoted, run.error
    champion = champion_get(project_id=project.pk)
    assert champion is not None
    classifier = modeling.classifier_for(champion)  # loaded back from the artifact
    assert classifier.config.features == "hybrid" and classifier.features is not None
    # fitted on the pool (labeled and unlabeled), never on the holdout
    pool_texts = list(project.documents.filter(split="pool").values_list("text", flat=True))
    assert classifier.head.in_dim == modeling.classifier_encoder(classifier).hidden_size + classifier.features.dims
    assert champion.metrics["holdout_count"] == 30  # the gate scored the holdout through the same block
    result = modeling.classifier_score(classifier, pool_texts[:20], return_samples=True)
    assert result.embeddings.shape[1] == modeling.classifier_encoder(classifier).hidden_size
    assert len(set(result.mutual_info.round(6))) > 5  # uncertainty per document, not one constant


@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_sparse_path_project_trains_saves_and_scores_with_its_regression() -> None:
    from modelsvc.features import SparsePath

    project = labeled_project(pool=60, holdout=30, unlabeled=40, retrain_after=10, model_features="sparse")
    run = train_now(project)
    assert run.status == RunStatus.SUCCEEDED and run.promoted, run.error
    champion = champion_get(project_id=project.pk)
    assert champion is not None
    classifier = modeling.classifier_for(champion)  # loaded back from the artifact
    assert classifier.config.features == "sparse" and isinstance(classifier.features, SparsePath)
    hidden = modeling.classifier_encoder(classifier).hidden_size
    assert classifier.head.in_dim == hidden  # the head reads the vectors; the path sits beside it
    record = classifier.calibration["sparse_path"]
    assert record["weight"] == classifier.features.weight and record["nll_out_of_fold"] <= record["nll_head_alone"]
    assert champion.metrics["holdout_count"] == 30  # the gate scored the holdout with the path
    pool_texts = list(project.documents.filter(split="pool").values_list("text", flat=True))
    result = modeling.classifier_score(classifier, pool_texts[:20], return_samples=True)
    assert result.embeddings.shape[1] == hidden
    assert result.probs.shape == (20, len(project.label_names))


def test_the_draws_importance_weights_reach_the_temperature_fit(monkeypatch) -> None:
    from labeling.models import AssignmentState, Split
    from labeling.services.training import runs
    from tests.factories import AssignmentFactory

    project = labeled_project(pool=80, acquisition_strategy="power_bald")
    pool_docs = list(project.documents.filter(split=Split.POOL, is_labeled=True).order_by("id"))
    # Half the pool was drawn by power sampling (probabilities from 1/400 to 1/40 in a pool of 400), the
    # rest came from the cold start (uniform: weight 1).
    for i, doc in enumerate(pool_docs[:40]):
        AssignmentFactory(
            document=doc, state=AssignmentState.DONE, selection_probability=(1 + i % 10) / 400, selection_pool_size=400
        )
    seen: list = []
    real_train = runs.train

    def spy(*args, **kwargs):
        seen.append(kwargs["calibration_weights"])
        return real_train(*args, **kwargs)

    monkeypatch.setattr(runs, "train", spy)
    run = train_now(project)
    assert run.status == RunStatus.SUCCEEDED, run.error
    [weights] = seen
    assert len(weights) == 80 and weights.mean() == pytest.approx(1.0)
    assert weights.max() / weights.min() == pytest.approx(10.0)  # 1/(400 q): from 10 down to 1
    choice = ModelVersion.objects.get(pk=run.model_version_id).calibration["temperature_choice"]
    assert choice["weighted"] is True and 0 < choice["effective_n"] < 80
