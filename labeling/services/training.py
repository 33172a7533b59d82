"""Retrain and recalibrate: triggers, the single-flight run, the promotion gate, promote / rollback.

A run goes through stages, each written to the TrainingRun in its own short transaction so the
admin, the API and ``manage.py retrain --sync`` can watch it:

    snapshot -> train -> calibrate -> evaluate -> promote | reject -> rescore -> done

Single flight: at most one queued/running run per project (a database constraint); a trigger that
arrives while one is open is counted on it (``coalesced_triggers``). The executing task holds a
PostgreSQL advisory lock keyed by the run for its whole life; the server drops it when the
worker dies, which is how ``training_reconcile`` tells a crashed run from a slow one.

Promotion rule (see docs/WORKERS.md): the first model is promoted. Later, with a labeled holdout of
at least ``MIN_HOLDOUT_LABELS`` documents covering 2+ classes, the challenger is promoted unless its
accuracy is lower than the champion's, re-measured on the same holdout documents now, by more than
``project.promotion_tolerance`` (a challenger worse on the holdout is never promoted). The reason
also gives the paired evidence: how many holdout documents only one of the two models gets right,
and a one-sided exact McNemar p-value, so a user can see when a rejection rests on too few holdout
labels (the replay showed a 10 % holdout rejecting most better-trained challengers on noise; the
remedy is more holdout labels: ``holdout_fraction`` / ``holdout_interleave``, or a wider tolerance).
With a smaller holdout, the two models' accuracies on their own calibration splits are compared
with the same tolerance (and with no such figure, the newer model, trained on more labels, is
promoted). The reason is written to ``decision_reason``. After a rejection the kept champion's temperature
is refit on the grown holdout (``champion_recalibrate``, see labeling/services/holdout_calibration.py).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
from django.db import IntegrityError, connection, transaction
from django.db.models import F, Max
from django.utils import timezone
from scipy.stats import binomtest

from labeling.models import (
    Annotation,
    Document,
    ModelStatus,
    ModelVersion,
    Project,
    RunStatus,
    RunTrigger,
    Split,
    TrainingRun,
)
from labeling.selectors.models import (
    OPEN_RUN_STATES,
    champion_get,
    labeled_count,
    latest_trained_version,
    majority_labels,
)
from labeling.services import modeling, storage
from labeling.services.dispatch import QueueKind, TaskName, enqueue
from labeling.services.holdout_calibration import (
    holdout_crossfit_probs,
    holdout_temperature_fit,
    holdout_usable,
    pool_prior_sd,
)
from labeling.services.scoring import map_fit, model_version_predictions_refresh
from modelsvc.artifacts import save_classifier
from modelsvc.calibration import evaluate_predictions
from modelsvc.config import TrainConfig
from modelsvc.model import Classifier
from modelsvc.training import TrainResult, encode_labels, train

log = logging.getLogger(__name__)

#: Below this McNemar p-value a rejection is called significant in the reason; above it, a hint to label more.
PROMOTION_ALPHA = 0.05
#: Fewer labeled holdout documents than this (or one class only) cannot judge a challenger.
MIN_HOLDOUT_LABELS = 10
#: The TRAIN task's hard time limit; on SQLite (no advisory locks) a run older than this is dead.
TRAIN_TIME_LIMIT_S = 3600
#: A queued run whose message has not started it after this long is sent again (lost message).
REQUEUE_AFTER_S = 600
#: After a failed run, automatic triggers wait this long before trying again.
FAILED_RUN_BACKOFF_S = 600
#: A rejected challenger's run refits the champion's temperature only if it moves by more than this.
RECALIBRATE_MIN_CHANGE = 0.03
#: Embeddings (from the cache) of up to this many documents fit the 2-D map.
MAP_SAMPLE = 2000
_PROGRESS_EVERY_S = 0.5


class TrainingDataError(ValueError):
    """The labels cannot train a model yet (e.g. a single class)."""


class PromotionError(ValueError):
    """This model version cannot be promoted."""


class RunLockedError(Exception):
    """The run's row is locked for a moment (a trigger being counted on it): retry shortly."""


class RollbackError(ValueError):
    """There is no earlier champion to roll back to."""


# --- triggers ------------------------------------------------------------------------------------


def training_run_request(*, project: Project, trigger: str, requested_by: Any = None) -> TrainingRun:
    """Queue a run, or count the trigger on the project's open run (never two at once)."""
    with transaction.atomic():
        open_run = (
            TrainingRun.objects.select_for_update()
            .filter(project=project, status__in=OPEN_RUN_STATES)
            .first()
        )
        if open_run is None:
            try:
                with transaction.atomic():
                    run = TrainingRun.objects.create(
                        project=project, trigger=trigger, requested_by=requested_by
                    )
            except IntegrityError:  # one_open_training_run_per_project: a concurrent request won
                open_run = TrainingRun.objects.select_for_update().get(
                    project=project, status__in=OPEN_RUN_STATES
                )
            else:
                enqueue(TaskName.TRAIN, args=(run.pk,), kind=QueueKind.TRAINING)
                return run
        TrainingRun.objects.filter(pk=open_run.pk).update(coalesced_triggers=F("coalesced_triggers") + 1)
        open_run.refresh_from_db()
        return open_run


def _label_classes(project: Project) -> int:
    return (
        Annotation.objects.filter(
            document__project=project, document__split=Split.POOL, label__in=project.label_names
        )
        .values("label")
        .distinct()
        .count()
    )


def retrain_due(project: Project, *, any_new: bool = False) -> tuple[bool, str]:
    """Whether enough new pool labels exist for a retrain, and why (``any_new``: the nightly rule)."""
    labeled = labeled_count(project_id=project.pk, split=Split.POOL)
    baseline = latest_trained_version(project_id=project.pk)
    if baseline is None:
        needed = max(project.retrain_after, 2 * len(project.label_names))
        if labeled < needed:
            return False, f"{labeled} of the {needed} labels a first model needs"
        if _label_classes(project) < 2:
            return False, "the labels cover a single class; a model needs at least 2"
        return True, f"{labeled} labels: enough for a first model"
    new = labeled - baseline.train_label_count
    threshold = 1 if any_new else project.retrain_after
    due = new >= threshold
    return due, f"{new} new labels since v{baseline.version} (retrain after {threshold})"


def _recently_failed(project: Project) -> bool:
    last = TrainingRun.objects.filter(project=project).order_by("-id").first()
    return (
        last is not None
        and last.status == RunStatus.FAILED
        and last.finished_at is not None
        and last.finished_at > timezone.now() - timedelta(seconds=FAILED_RUN_BACKOFF_S)
    )


def project_check_retrain(
    *, project_id: int, trigger: str = RunTrigger.THRESHOLD, count_if_open: bool = True
) -> TrainingRun | None:
    """Request a run when the project is due (after label submissions and on the beat).

    ``count_if_open=False`` (the beat's periodic check) leaves an open run alone instead of
    counting one more coalesced trigger on it every minute.
    """
    project = Project.objects.filter(pk=project_id).first()
    if project is None or _recently_failed(project):
        return None
    if not count_if_open and TrainingRun.objects.filter(project=project, status__in=OPEN_RUN_STATES).exists():
        return None
    due, reason = retrain_due(project, any_new=trigger == RunTrigger.SCHEDULE)
    if not due:
        return None
    log.info("project %s: retrain (%s): %s", project_id, trigger, reason)
    return training_run_request(project=project, trigger=trigger)


def training_scheduled() -> list[int]:
    """Nightly: a run for every project with any label its latest model has not seen."""
    runs = [
        project_check_retrain(project_id=pk, trigger=RunTrigger.SCHEDULE, count_if_open=False)
        for pk in Project.objects.values_list("pk", flat=True)
    ]
    return [run.pk for run in runs if run is not None]


# --- the run ------------------------------------------------------------------------------------


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
        if run.status == RunStatus.RUNNING and run.model_version_id is not None:
            # Its previous executor died (it no longer holds the run lock): start over cleanly.
            _reject_unfinished(run.model_version_id, f"run {run.pk} was restarted after its worker stopped")
        run.status, run.stage, run.progress = RunStatus.RUNNING, "snapshot", 0.0
        run.started_at, run.error, run.model_version = timezone.now(), "", None
        run.save(update_fields=["status", "stage", "progress", "started_at", "error", "model_version"])
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
            _fail(run_id, f"{type(exc).__name__}: {exc}")
        return TrainingRun.objects.get(pk=run_id)


def _execute(run: TrainingRun) -> None:
    project = run.project
    labeled = majority_labels(project=project, split=Split.POOL)
    if len({label for _, _, label in labeled}) < 2:
        raise TrainingDataError(f"{len(labeled)} labeled pool documents cover fewer than 2 classes")
    _stage(run.pk, "train", labels_used=len(labeled))
    texts, labels = [t for _, t, _ in labeled], [lab for _, _, lab in labeled]
    config = modeling.model_config()
    encoder = modeling.encoder_for(config)
    cache = modeling.embedding_cache_for(encoder.encoder_id)
    result = train(
        texts,
        labels,
        label_names=project.label_names,
        model_config=config,
        train_config=TrainConfig(seed=project.seed, fine_tune=project.fine_tune),
        cache=cache,
        encoder=encoder,
        progress=_progress_writer(run.pk),
    )
    _stage(run.pk, "calibrate", 1.0)
    result.calibration["device"] = encoder.device_name  # where the encoder ran (and fine-tuned), for the record
    # the classifier's own encoder: the base one, or a tuned copy (fine_tune) with its own cache rows
    scorer = modeling.classifier_encoder(result.classifier)
    scorer_cache = modeling.embedding_cache_for(scorer.encoder_id)
    holdout = majority_labels(project=project, split=Split.HOLDOUT)
    if holdout_usable([lab for _, _, lab in holdout]):
        refit = holdout_temperature_fit(
            classifier=result.classifier,
            embeddings=scorer.encode([t for _, t, _ in holdout], cache=scorer_cache),
            truth=[lab for _, _, lab in holdout],
            prior_sd=pool_prior_sd(project.acquisition_strategy),
        )
        result.calibration.update(refit or {})
    challenger = _model_version_save(
        run, result, train_label_count=len(labeled), train_embeddings=scorer.encode(texts, cache=scorer_cache)
    )
    _stage(run.pk, "evaluate")
    metrics, champion_accuracy = _evaluate(project, result.classifier, challenger)
    discordant = metrics.get("holdout_discordant", {})
    promote, reason = promotion_decision(
        has_champion=champion_accuracy is not _NO_CHAMPION,
        champion_only_correct=discordant.get("champion_only"),
        challenger_only_correct=discordant.get("challenger_only"),
        holdout_count=metrics["holdout_count"],
        holdout_classes=metrics["holdout_classes"],
        challenger_accuracy=metrics.get("accuracy"),
        champion_accuracy=None if champion_accuracy is _NO_CHAMPION else champion_accuracy,
        challenger_calibration_accuracy=metrics["calibration_split"].get("accuracy"),
        champion_calibration_accuracy=_champion_calibration_accuracy(project),
        tolerance=project.promotion_tolerance,
    )
    ModelVersion.objects.filter(pk=challenger.pk).update(metrics=metrics, decision_reason=reason)
    _decide(run, challenger, promote, reason)
    if not promote:
        _champion_recalibrate_after_rejection(run.pk, project, holdout)


def _champion_recalibrate_after_rejection(run_id: int, project: Project, holdout: list[tuple[int, str, str]]) -> None:
    """The champion stays, but the holdout grew since its temperature was fitted: refit it."""
    try:
        note = champion_recalibrate(project=project, holdout=holdout)
    except Exception:  # noqa: BLE001 - the decision is recorded; a failed refit keeps the old temperature
        log.exception("project %s: refitting the champion's temperature after run %s failed", project.pk, run_id)
        return
    if note:
        run = TrainingRun.objects.get(pk=run_id)
        TrainingRun.objects.filter(pk=run_id).update(decision_reason=f"{run.decision_reason}; {note}")


def champion_recalibrate(*, project: Project, holdout: list[tuple[int, str, str]] | None = None) -> str | None:
    """Refit the champion's temperature on the current labeled holdout; a note of what changed, or None.

    A champion keeps the temperature fitted when it was trained (on the holdout of that time) for as
    long as the gate rejects its challengers; on rt-snippets with random sampling that was a fit on
    30-40 holdout labels kept from 450 to 1,000 labels. After a rejection the holdout has grown, so
    the same ``holdout_temperature_fit`` runs again on all of it. Nothing changes unless the holdout
    has new labels and the temperature moves by more than ``RECALIBRATE_MIN_CHANGE`` (relative):
    then the champion gets a new artifact (same head, new temperature; the old artifact stays for
    what still references it) and its stored predictions are re-scored with it.
    """
    champion = champion_get(project_id=project.pk)
    if champion is None:
        return None
    if holdout is None:
        holdout = majority_labels(project=project, split=Split.HOLDOUT)
    truth = [lab for _, _, lab in holdout]
    if not holdout_usable(truth) or len(truth) <= champion.calibration.get("n_temperature_holdout", 0):
        return None
    current = modeling.classifier_for(champion)
    refit = dataclasses.replace(current, calibration=dict(current.calibration))  # the head is shared, unchanged
    encoder = modeling.classifier_encoder(current)
    embeddings = encoder.encode([t for _, t, _ in holdout], cache=modeling.embedding_cache_for(encoder.encoder_id))
    changed = holdout_temperature_fit(
        classifier=refit, embeddings=embeddings, truth=truth, prior_sd=pool_prior_sd(project.acquisition_strategy)
    )
    if changed is None or abs(np.log(refit.temperature / current.temperature)) < np.log1p(RECALIBRATE_MIN_CHANGE):
        return None
    name = f"project{project.pk}-v{champion.version}-holdout{len(truth)}"
    local = save_classifier(refit, storage.artifact_workdir(name))
    location = storage.artifact_publish(local_dir=local, name=name)
    calibration = {**champion.calibration, **changed, "recalibrated_at": timezone.now().isoformat()}
    updated = ModelVersion.objects.filter(
        pk=champion.pk, status=ModelStatus.CHAMPION, artifact_path=champion.artifact_path
    ).update(artifact_path=location, calibration=calibration)
    if not updated:
        return None  # promoted away or refit by another run meanwhile
    champion.refresh_from_db()
    rescored = model_version_predictions_refresh(champion)
    return (
        f"the champion v{champion.version}'s temperature was refit on {len(truth)} holdout labels: "
        f"{current.temperature:.3f} -> {refit.temperature:.3f}"
        + (f", {rescored} stored predictions re-scored" if rescored is not None else "")
    )


def _model_version_save(
    run: TrainingRun, result: TrainResult, *, train_label_count: int, train_embeddings: np.ndarray
) -> ModelVersion:
    """Write the artifact (atomically) and record the challenger as a candidate."""
    project = run.project
    version = (ModelVersion.objects.filter(project=project).aggregate(v=Max("version"))["v"] or 0) + 1
    name = f"project{project.pk}-v{version}-run{run.pk}"
    local = save_classifier(result.classifier, storage.artifact_workdir(name))
    location = storage.artifact_publish(local_dir=local, name=name)
    calibration = dict(result.calibration)
    calibration["map"] = map_fit(_map_sample(project, result.classifier.encoder_id, train_embeddings))
    calibration["split_sizes"] = result.split_sizes
    calibration["timings_s"] = result.timings
    challenger = ModelVersion.objects.create(
        project=project,
        version=version,
        status=ModelStatus.CANDIDATE,
        artifact_path=location,
        encoder_name=result.classifier.encoder_id,
        label_map=list(result.classifier.label_names),
        train_label_count=train_label_count,
        calibration=calibration,
        metrics={"calibration_split": _compact(result.metrics)},
    )
    TrainingRun.objects.filter(pk=run.pk).update(model_version=challenger)
    return challenger


def _map_sample(project: Project, encoder_id: str, train_embeddings: np.ndarray) -> np.ndarray:
    """Training vectors plus cached vectors of the newest documents: what the map will show."""
    texts = list(
        Document.objects.filter(project=project).order_by("-id").values_list("text", flat=True)[:MAP_SAMPLE]
    )
    found = modeling.embedding_cache_for(encoder_id).get_many(encoder_id, texts)
    if not found:
        return train_embeddings
    return np.concatenate([train_embeddings, np.stack(list(found.values()))])


def _compact(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if not k.startswith("reliability_uncalibrated")}


_NO_CHAMPION: Any = object()


def _evaluate(
    project: Project, classifier: Classifier, challenger: ModelVersion
) -> tuple[dict[str, Any], Any]:
    """Challenger metrics on the labeled holdout, and the champion's accuracy on the same documents."""
    metrics: dict[str, Any] = dict(challenger.metrics)
    holdout = majority_labels(project=project, split=Split.HOLDOUT)
    texts, truth = [t for _, t, _ in holdout], [lab for _, _, lab in holdout]
    metrics["holdout_count"] = len(holdout)
    metrics["holdout_classes"] = len(set(truth))
    champion = champion_get(project_id=project.pk)
    if holdout:
        res = modeling.classifier_score(classifier, texts)
        y = encode_labels(truth, classifier.label_names)
        challenger_predicted = res.predicted
        calibrated = res.probs
        if classifier.calibration.get("temperature_source") == "holdout":
            # The temperature was fitted on these very documents: report cross-fitted calibration.
            calibrated = holdout_crossfit_probs(
                classifier=classifier,
                embeddings=res.embeddings,
                truth=truth,
                seed=project.seed,
                prior_sd=pool_prior_sd(project.acquisition_strategy),
            )
            metrics["calibration_reported"] = "holdout, 2-fold cross-fitted temperature"
        measured = evaluate_predictions(res.probs_uncalibrated, calibrated, y, res.uncertainty())
        measured.pop("n", None)
        metrics.update(_compact(measured))
        metrics["evaluated_on"] = "holdout"
    else:
        metrics["evaluated_on"] = "calibration_split"
    if champion is None:
        return metrics, _NO_CHAMPION
    metrics["champion_version"] = champion.version
    if not holdout:
        return metrics, None
    champion_clf = modeling.classifier_for(champion)
    res = modeling.classifier_score(champion_clf, texts)
    champion_right = np.array(
        [champion_clf.label_names[int(i)] == t for i, t in zip(res.predicted, truth, strict=True)]
    )
    accuracy = float(champion_right.mean())
    metrics["champion_holdout_accuracy"] = accuracy
    challenger_right = np.asarray(challenger_predicted) == np.asarray(y)
    metrics["holdout_discordant"] = {
        "champion_only": int((champion_right & ~challenger_right).sum()),
        "challenger_only": int((challenger_right & ~champion_right).sum()),
    }
    return metrics, accuracy


def _champion_calibration_accuracy(project: Project) -> float | None:
    champion = champion_get(project_id=project.pk)
    if champion is None:
        return None
    value = champion.metrics.get("calibration_split", {}).get("accuracy")
    return None if value is None else float(value)


def promotion_decision(
    *,
    has_champion: bool,
    holdout_count: int,
    holdout_classes: int,
    challenger_accuracy: float | None,
    champion_accuracy: float | None,
    challenger_calibration_accuracy: float | None,
    champion_calibration_accuracy: float | None,
    tolerance: float,
    champion_only_correct: int | None = None,
    challenger_only_correct: int | None = None,
) -> tuple[bool, str]:
    """The promotion gate (pure): (promote?, the reason in words).

    ``champion_only_correct`` / ``challenger_only_correct`` count the holdout documents that only
    one of the two models gets right; without them a drop beyond the tolerance rejects outright.
    """
    if not has_champion:
        return True, "first model: there is no champion to compare with"
    if holdout_count >= MIN_HOLDOUT_LABELS and holdout_classes >= 2:
        assert challenger_accuracy is not None and champion_accuracy is not None
        head = (
            f"holdout of {holdout_count} labeled documents: challenger accuracy {challenger_accuracy:.3f}, "
            f"champion {champion_accuracy:.3f} on the same documents, tolerance {tolerance:.3f}: "
        )
        if challenger_accuracy >= champion_accuracy - tolerance:
            return True, head + "promoted"
        if champion_only_correct is None or challenger_only_correct is None:
            return False, head + "rejected (worse than the champion by more than the tolerance)"
        p_value = _mcnemar_worse_p(champion_only_correct, challenger_only_correct)
        evidence = (
            f"champion alone right on {champion_only_correct}, challenger alone on {challenger_only_correct}, "
            f"McNemar p={p_value:.3f}"
        )
        if p_value < PROMOTION_ALPHA:
            return False, head + f"rejected: significantly worse ({evidence})"
        return False, head + (
            f"rejected: worse by more than the tolerance, though the holdout cannot tell the two apart "
            f"({evidence}); label more holdout documents or widen the tolerance"
        )
    prefix = (
        f"holdout too small to judge ({holdout_count} labeled, {holdout_classes} classes; "
        f"needs {MIN_HOLDOUT_LABELS} covering 2 classes): "
    )
    if challenger_calibration_accuracy is None or champion_calibration_accuracy is None:
        return (
            True,
            prefix + "no calibration-split figure for both models; the newer model has more labels: promoted",
        )
    ok = challenger_calibration_accuracy >= champion_calibration_accuracy - tolerance
    return ok, prefix + (
        f"calibration-split accuracy {challenger_calibration_accuracy:.3f} vs the champion's "
        f"{champion_calibration_accuracy:.3f}, tolerance {tolerance:.3f}: "
        + ("promoted" if ok else "rejected")
    )


def _mcnemar_worse_p(champion_only: int, challenger_only: int) -> float:
    """One-sided exact McNemar: P(the champion wins this many discordant pairs | equal accuracy)."""
    discordant = champion_only + challenger_only
    if discordant == 0:
        return 1.0
    return float(binomtest(champion_only, discordant, 0.5, alternative="greater").pvalue)


def _promote(model_version: ModelVersion) -> None:
    """Old champion -> retired, this one -> champion, in one transaction (the caller's)."""
    Project.objects.select_for_update().get(pk=model_version.project_id)  # serialises promotions
    now = timezone.now()
    ModelVersion.objects.filter(project_id=model_version.project_id, status=ModelStatus.CHAMPION).exclude(
        pk=model_version.pk
    ).update(status=ModelStatus.RETIRED)
    ModelVersion.objects.filter(pk=model_version.pk).update(status=ModelStatus.CHAMPION, promoted_at=now)
    model_version.status, model_version.promoted_at = ModelStatus.CHAMPION, now
    _close_superseded_rescores(model_version)


def _close_superseded_rescores(champion: ModelVersion) -> None:
    """A run still re-scoring for an older champion will never finish: its model is not served."""
    TrainingRun.objects.filter(project_id=champion.project_id, stage="rescore").exclude(
        model_version=champion
    ).update(stage="done")


def _decide(run: TrainingRun, challenger: ModelVersion, promote: bool, reason: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        if promote:
            _stage(run.pk, "promote", 1.0)
            _promote(challenger)
            enqueue(TaskName.RESCORE_POOL, args=(run.pk, challenger.pk), kind=QueueKind.SCORING)
        else:
            ModelVersion.objects.filter(pk=challenger.pk).update(status=ModelStatus.REJECTED)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.SUCCEEDED,
            promoted=promote,
            decision_reason=reason,
            finished_at=now,
            stage="rescore" if promote else "done",
            progress=0.0 if promote else 1.0,
        )


def _reject_unfinished(model_version_id: int, reason: str) -> None:
    ModelVersion.objects.filter(
        pk=model_version_id, status__in=[ModelStatus.CANDIDATE, ModelStatus.TRAINING]
    ).update(status=ModelStatus.REJECTED, decision_reason=reason)


def _fail(run_id: int, error: str) -> None:
    run = TrainingRun.objects.get(pk=run_id)
    if run.model_version_id is not None:
        _reject_unfinished(run.model_version_id, f"training run {run_id} failed: {error}")
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=RunStatus.FAILED,
        error=f"stage {run.stage or 'start'}: {error}"[:10_000],
        finished_at=timezone.now(),
        promoted=False,
    )


# --- admin: promote / rollback --------------------------------------------------------------------


def model_version_promote(*, model_version: ModelVersion) -> ModelVersion:
    """Make ``model_version`` the champion by hand (admin override of the gate)."""
    if model_version.status == ModelStatus.CHAMPION:
        return model_version
    if model_version.status == ModelStatus.TRAINING or not model_version.artifact_path:
        raise PromotionError(f"v{model_version.version} has no finished artifact")
    with transaction.atomic():
        _promote(model_version)
        enqueue(TaskName.SCORE_PENDING, args=(model_version.project_id,), kind=QueueKind.SCORING)
    return model_version


def model_version_rollback(*, project: Project) -> ModelVersion:
    """Reinstate the previous champion; the current one is marked rejected. Returns the new champion."""
    with transaction.atomic():
        Project.objects.select_for_update().get(pk=project.pk)
        current = champion_get(project_id=project.pk)
        if current is None:
            raise RollbackError("the project has no champion to roll back")
        previous = (
            ModelVersion.objects.filter(
                project=project, status=ModelStatus.RETIRED, promoted_at__isnull=False
            )
            .order_by("-promoted_at", "-version")
            .first()
        )
        if previous is None:
            raise RollbackError(f"v{current.version} is the only model that was ever champion")
        now = timezone.now()
        ModelVersion.objects.filter(pk=current.pk).update(
            status=ModelStatus.REJECTED,
            decision_reason=f"rolled back to v{previous.version} at {now:%Y-%m-%d %H:%M} UTC",
        )
        ModelVersion.objects.filter(pk=previous.pk).update(status=ModelStatus.CHAMPION, promoted_at=now)
        _close_superseded_rescores(previous)
        # Documents ingested under the rolled-back model still need this one's predictions.
        enqueue(TaskName.SCORE_PENDING, args=(project.pk,), kind=QueueKind.SCORING)
    previous.refresh_from_db()
    return previous


# --- reconciliation -------------------------------------------------------------------------------


def _orphaned(run: TrainingRun) -> bool:
    if connection.vendor == "postgresql":
        return modeling.lock_is_free(modeling.LOCK_TRAINING, run.pk)
    started = run.started_at or run.created_at
    return started < timezone.now() - timedelta(seconds=TRAIN_TIME_LIMIT_S)


def training_reconcile() -> dict[str, Any]:
    """Beat: fail runs whose worker died, resend runs whose message was lost, check thresholds."""
    failed = []
    for run in TrainingRun.objects.filter(status=RunStatus.RUNNING):
        if _orphaned(run):
            _fail(run.pk, "the worker executing this run stopped (killed, crashed or out of memory)")
            failed.append(run.pk)
    cutoff = timezone.now() - timedelta(seconds=REQUEUE_AFTER_S)
    resent = list(
        TrainingRun.objects.filter(status=RunStatus.QUEUED, created_at__lt=cutoff).values_list(
            "pk", flat=True
        )
    )
    for run_id in resent:
        enqueue(TaskName.TRAIN, args=(run_id,), kind=QueueKind.TRAINING)
    requested = []
    for project_id in Project.objects.values_list("pk", flat=True):
        run = project_check_retrain(project_id=project_id, count_if_open=False)
        if run is not None:
            requested.append(run.pk)
    if failed or resent:
        log.warning("training reconcile: failed orphaned runs %s, resent queued runs %s", failed, resent)
    return {"runs_failed": failed, "runs_resent": resent, "runs_requested": requested}
