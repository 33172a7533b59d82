"""Executing a training run: claim it, turn rows into arrays for modelsvc, save what comes back.

Single flight: the TRAIN task holds a PostgreSQL advisory lock keyed by the run while it executes
(``modeling.LOCK_TRAINING``), so a second message for the same run is a no-op and the beat's
reconciliation can tell a crashed worker from a slow one. Any failure marks the run failed and
leaves the champion serving.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from labeling.models import Document, ModelStatus, ModelVersion, Project, RunStatus, Split, TrainingRun
from labeling.selectors.consensus import flagged_pending
from labeling.selectors.models import OPEN_RUN_STATES, majority_labels
from labeling.services import modeling
from labeling.services.errors import RunLockedError, TrainingDataError
from labeling.services.events import Event, publish
from labeling.services.training import tiers
from labeling.services.training.evaluation import challenger_evaluate, metrics_compact
from labeling.services.training.label_issues import (
    label_issues_flag,
    label_issues_rank,
    reviewer_decided,
)
from labeling.services.training.multilabel import multilabel_challenger_evaluate
from labeling.services.training.promotion import challenger_decide
from labeling.services.training.recalibration import (
    champion_recalibrate,
    holdout_arrays,
    holdout_prior_sd,
    pool_calibration_weights,
    random_calibration_set,
)
from modelsvc.finetune import train_fine_tuned
from modelsvc.fitting import TrainResult
from modelsvc.holdout import holdout_assess
from modelsvc.projection import map_fit
from modelsvc.training import train

log = logging.getLogger(__name__)

#: Embeddings (from the cache) of up to this many documents fit the 2-D map.
MAP_SAMPLE = 2000
_PROGRESS_EVERY_S = 0.5


def _stage(run_id: int, stage: str, progress: float = 0.0, **fields: Any) -> None:
    TrainingRun.objects.filter(pk=run_id).update(stage=stage, progress=progress, **fields)


def _progress_writer(run_id: int) -> Callable[[str, float], None]:
    """modelsvc progress (encode / fit / calibrate, fraction) -> run stage, at most twice a second."""
    last_stage, last_at = [""], [0.0]

    def write(stage: str, fraction: float) -> None:
        ours = "calibrate" if stage == "calibrate" else "train"
        now = time.monotonic()
        if ours != last_stage[0] or now - last_at[0] >= _PROGRESS_EVERY_S or fraction >= 1.0:
            # encode is the first half of "train", fitting the head the second
            value = fraction / 2 if stage == "encode" else 0.5 + fraction / 2 if stage == "fit" else fraction
            _stage(run_id, ours, min(1.0, value))
            last_stage[0], last_at[0] = ours, now

    return write


def _claim(run_id: int) -> TrainingRun | None:
    """Move the run to running (row lock, skip a locked row); None when there is nothing to do.

    Raises RunLockedError when the row is locked by a short transaction (the TRAIN task retries).
    """
    with transaction.atomic():
        run = (
            TrainingRun.objects.select_for_update(skip_locked=True)
            .filter(pk=run_id, status__in=OPEN_RUN_STATES)
            .select_related("project")
            .first()
        )
        if run is None:
            if TrainingRun.objects.filter(pk=run_id, status__in=OPEN_RUN_STATES).exists():
                raise RunLockedError(f"training run {run_id} is locked by another transaction")
            return None
        if run.status == RunStatus.RUNNING and run.attempts >= settings.TRAIN_MAX_ATTEMPTS:
            # Each start so far killed its worker (out of memory ...): re-delivering it would again.
            run.error = f"failed after {run.attempts} attempts: the worker died each time"
            if run.model_version_id is not None:
                _reject_unfinished(run.model_version_id, f"training run {run.pk} {run.error}")
            run.status, run.finished_at, run.promoted = RunStatus.FAILED, timezone.now(), False
            run.save(update_fields=["status", "error", "finished_at", "promoted"])
            publish(Event.TRAINING_FINISHED, {
                "project_id": run.project_id, "run_id": run.pk, "status": RunStatus.FAILED, "promoted": False,
                "model_version_id": run.model_version_id, "reason": "", "error": run.error,
            }, project=run.project_id)
            return None
        if run.status == RunStatus.RUNNING and run.model_version_id is not None:
            # Its previous executor died (it no longer holds the run lock): start over cleanly.
            _reject_unfinished(run.model_version_id, f"run {run.pk} was restarted after its worker stopped")
        run.status, run.stage, run.progress = RunStatus.RUNNING, "snapshot", 0.0
        run.started_at, run.error, run.model_version = timezone.now(), "", None
        run.attempts += 1
        run.save(update_fields=["status", "stage", "progress", "started_at", "error", "model_version", "attempts"])
        return run


def training_run_execute(*, run_id: int) -> TrainingRun | None:
    """Execute a queued run (the TRAIN task). A second message for the same run is a no-op."""
    with modeling.lock_held(modeling.LOCK_TRAINING, run_id) as got:
        if not got:
            return None  # a live worker is executing this run
        run = _claim(run_id)
        if run is None:
            return TrainingRun.objects.filter(pk=run_id).first()
        try:
            _execute(run)
        except Exception as exc:  # noqa: BLE001 - any failure marks the run failed; the champion stays
            log.exception("training run %s failed", run_id)
            training_run_fail(run_id, f"{type(exc).__name__}: {exc}")
        return TrainingRun.objects.get(pk=run_id)


def _execute(run: TrainingRun) -> None:
    project = run.project
    labeled = majority_labels(project=project, split=Split.POOL)
    if len({label for _, _, label in labeled}) < 2:
        raise TrainingDataError(f"{len(labeled)} labeled pool documents cover fewer than 2 classes")
    texts, labels = [t for _, t, _ in labeled], [lab for _, _, lab in labeled]
    space = project.label_space
    base = modeling.model_config()
    # The head the task type needs (softmax, or one sigmoid per label) and the project's input features;
    # neither changes the encoder or its vectors, so the tier plan picks the encoder from the base config.
    config = dataclasses.replace(base, features=project.model_features, output=space.output)
    started = time.monotonic()
    _stage(run.pk, "train", labels_used=len(labeled))
    plan = tiers.tier_plan(project=project, labeled=len(labeled), config=base, now=started)
    _stage(run.pk, "train", tier=plan.tier)
    log.info("project %s run %s: %s run (%s)", project.pk, run.pk, plan.tier, plan.why)
    encoder = plan.encoder
    if plan.train_config.fine_tune != "frozen":
        if config.output != "softmax" or config.features != "embedding":
            raise TrainingDataError(
                f"fine-tuning ({plan.train_config.fine_tune}) trains a single-label head on the encoder's vectors "
                f"alone; this project's head is {config.output} with {config.features} features"
            )
        result = train_fine_tuned(
            texts,
            labels,
            label_names=project.label_names,
            model_config=config,
            train_config=plan.train_config,
            encoder=encoder,
            progress=_progress_writer(run.pk),
            deadline=plan.deadline,
        )
    else:
        result = train(
            texts,
            space.training_targets(labels),
            label_names=project.label_names,
            model_config=config,
            train_config=plan.train_config,
            cache=modeling.embedding_cache_for(encoder.encoder_id),
            encoder=encoder,
            progress=_progress_writer(run.pk),
            unlabeled_texts=_pool_texts(project) if config.features in ("hybrid", "sparse") else (),
            calibration_weights=pool_calibration_weights(document_ids=[doc_id for doc_id, _, _ in labeled]),
        )
        # A fast run on a tuned champion's encoder deploys those layers with its new head.
        result.classifier.tuned = encoder.tuned
        result.classifier.calibration_set = random_calibration_set(
            result, labeled, space=space, tuned=encoder.tuned is not None
        )
    _stage(run.pk, "calibrate", 1.0, train_seconds=time.monotonic() - started)
    result.calibration["tier"] = {"tier": plan.tier, "why": plan.why, "train_s": round(time.monotonic() - started, 1)}
    result.calibration["device"] = encoder.device_name  # where the encoder ran (and fine-tuned), for the record
    # One snapshot of the holdout serves the temperature fit, the challenger's figures and the gate.
    holdout = majority_labels(project=project, split=Split.HOLDOUT)
    if result.classifier.multi_label:
        _execute_multilabel(run, result, texts=texts, holdout=holdout)
        return
    assessment = None
    if holdout:
        embeddings, y = holdout_arrays(project, result.classifier, holdout)
        assessment = holdout_assess(
            result.classifier, embeddings, y, seed=project.seed, prior_sd=holdout_prior_sd(project)
        )
        result.calibration.update(assessment.calibration or {})
    challenger = _model_version_save(run, result, texts=texts)
    _stage(run.pk, "evaluate")
    evaluation = challenger_evaluate(
        project=project, challenger=challenger, classifier=result.classifier, holdout=holdout, assessment=assessment
    )
    promote, reason = evaluation.decide(project.promotion_tolerance)
    metrics = dict(evaluation.metrics)
    if result.oof_probs is not None:
        # Flags still waiting are not ranked again (whether they trained or were held back) and use up the
        # share first, so an unreviewed backlog cannot grow past it.
        pending = flagged_pending(project=project, split=Split.POOL)
        ranked = [i for i, (doc_id, _, _) in enumerate(labeled) if doc_id not in pending]
        metrics["label_issues"] = label_issues_rank(
            document_ids=[labeled[i][0] for i in ranked],
            labels=[labels[i] for i in ranked],
            label_names=result.classifier.label_names,
            oof_probs=result.oof_probs[ranked],
            share=project.noise_review_share,
            decided=reviewer_decided(project=project),
            pending=len(pending),
        )
        metrics["label_issues"]["opened_for_review"] = label_issues_flag(
            project=project, issues=metrics["label_issues"]
        )
    ModelVersion.objects.filter(pk=challenger.pk).update(metrics=metrics, decision_reason=reason)
    if promote:
        _tuned_cache_ready(run, result)
    challenger_decide(
        run=run, challenger=challenger, promote=promote, reason=reason,
        evaluated_against=evaluation.champion.pk if evaluation.champion else None,
    )
    if not promote:
        _champion_recalibrate_after_rejection(run, holdout)


def _pool_texts(project: Project) -> list[str]:
    """The pool's texts (labeled or not; never the holdout): what a hybrid model's TF-IDF block and a
    sparse path's vectorizers are fitted on."""
    return list(Document.objects.filter(project=project, split=Split.POOL).values_list("text", flat=True))


def _execute_multilabel(
    run: TrainingRun, result: TrainResult, *, texts: list[str], holdout: list[tuple[int, str, str]]
) -> None:
    """Evaluate and decide a multi-label challenger: the set metrics on the holdout, the example-F1 gate.

    Its per-label temperatures and thresholds stay as cross-fitted on the pool: the holdout refit and the
    likely-wrong-label ranking are single-label (softmax) procedures.
    """
    challenger = _model_version_save(run, result, texts=texts)
    _stage(run.pk, "evaluate")
    evaluation = multilabel_challenger_evaluate(
        project=run.project, challenger=challenger, classifier=result.classifier, holdout=holdout
    )
    promote, reason = evaluation.decide(run.project.promotion_tolerance)
    ModelVersion.objects.filter(pk=challenger.pk).update(metrics=evaluation.metrics, decision_reason=reason)
    challenger_decide(
        run=run, challenger=challenger, promote=promote, reason=reason,
        evaluated_against=evaluation.champion.pk if evaluation.champion else None,
    )


def _tuned_cache_ready(run: TrainingRun, result: TrainResult) -> None:
    """Before a challenger with a new encoder identity becomes champion: its vectors of the project's documents.

    The old champion serves while this runs (stage "cache"); the re-scoring after the promotion then
    reads vectors instead of running the tuned encoder. A fast run on the champion's own encoder finds
    them all cached and encodes nothing.
    """
    if result.classifier.tuned is None:
        return
    _stage(run.pk, "cache", 0.0)
    started = time.monotonic()
    encoded = tiers.tuned_cache_build(
        project=run.project, classifier=result.classifier, progress=lambda f: _stage(run.pk, "cache", f)
    )
    log.info(
        "run %s: %d vectors of %s cached in %.1f s before promotion",
        run.pk, encoded, result.classifier.encoder_id, time.monotonic() - started,
    )


def _champion_recalibrate_after_rejection(run: TrainingRun, holdout: list[tuple[int, str, str]]) -> None:
    """The champion stays, but the holdout grew since its temperature was fitted: refit it."""
    try:
        note = champion_recalibrate(project=run.project, holdout=holdout)
    except Exception:  # noqa: BLE001 - the decision is recorded; a failed refit keeps the old temperature
        log.exception("project %s: refitting the champion's temperature after run %s failed", run.project_id, run.pk)
        return
    if note:
        reason = TrainingRun.objects.get(pk=run.pk).decision_reason
        TrainingRun.objects.filter(pk=run.pk).update(decision_reason=f"{reason}; {note}")


def _model_version_save(run: TrainingRun, result: TrainResult, *, texts: list[str]) -> ModelVersion:
    """Write the artifact (atomically) and record the challenger as a candidate."""
    project = run.project
    version = (ModelVersion.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0) + 1
    name = f"project{project.pk}-v{version}-run{run.pk}"
    location, digest = modeling.artifact_save(result.classifier, name)
    calibration = dict(result.calibration)
    calibration["map"] = map_fit(_map_sample(run, result, texts))
    calibration["split_sizes"] = result.split_sizes
    calibration["timings_s"] = result.timings
    challenger = ModelVersion.objects.create(
        project=project,
        version=version,
        status=ModelStatus.CANDIDATE,
        artifact_path=location,
        artifact_digest=digest,
        encoder_name=result.classifier.encoder_id,
        label_map=list(result.classifier.label_names),
        train_label_count=len(texts),
        calibration=calibration,
        thresholds=result.classifier.thresholds,
        metrics={"calibration_split": metrics_compact(result.metrics)},
    )
    TrainingRun.objects.filter(pk=run.pk).update(model_version=challenger)
    return challenger


def _map_sample(run: TrainingRun, result: TrainResult, texts: list[str]) -> np.ndarray:
    """Training vectors (N, H) plus cached vectors of the newest documents: what the map will show."""
    # The classifier's own encoder: the base one, or a tuned copy (fine_tune) with its own cache rows.
    scorer = modeling.classifier_encoder(result.classifier)
    cache = modeling.embedding_cache_for(scorer.encoder_id)
    train_embeddings = scorer.encode(texts, cache=cache)
    newest = list(
        Document.objects.filter(project=run.project).order_by("-id").values_list("text", flat=True)[:MAP_SAMPLE]
    )
    found = cache.get_many(scorer.encoder_id, newest)
    if not found:
        return train_embeddings
    return np.concatenate([train_embeddings, np.stack(list(found.values()))])


def _reject_unfinished(model_version_id: int, reason: str) -> None:
    ModelVersion.objects.filter(
        pk=model_version_id, status__in=[ModelStatus.CANDIDATE, ModelStatus.TRAINING]
    ).update(status=ModelStatus.REJECTED, decision_reason=reason)


def training_run_fail(run_id: int, error: str) -> None:
    """Mark a running run failed (its unfinished challenger rejected); the champion stays."""
    run = TrainingRun.objects.get(pk=run_id)
    if run.model_version_id is not None:
        _reject_unfinished(run.model_version_id, f"training run {run_id} failed: {error}")
    message = f"stage {run.stage or 'start'}: {error}"[:10_000]
    with transaction.atomic():
        failed = TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            status=RunStatus.FAILED, error=message, finished_at=timezone.now(), promoted=False,
        )
        if failed:
            publish(Event.TRAINING_FINISHED, {
                "project_id": run.project_id, "run_id": run_id, "status": RunStatus.FAILED, "promoted": False,
                "model_version_id": run.model_version_id, "reason": "", "error": message,
            }, project=run.project_id)
