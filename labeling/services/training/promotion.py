"""Recording the gate's decision on a run, and the admin's promote / rollback overrides.

The gate itself (when a challenger replaces the champion) is ``modelsvc.promotion``; this module
writes what follows from it: model statuses, the run's outcome, the rescoring it starts.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from labeling.models import AuditAction, ModelStatus, ModelVersion, Project, RunStatus, TrainingRun
from labeling.selectors.models import champion_get
from labeling.services.audit import audit_record
from labeling.services.dispatch import TaskName, enqueue
from labeling.services.errors import PromotionError, RollbackError
from labeling.services.events import Event, publish


def _promote(model_version: ModelVersion) -> None:
    """Old champion -> retired, this one -> champion, in one transaction (the caller's)."""
    Project.objects.select_for_update().get(pk=model_version.project_id)  # serialises promotions
    now = timezone.now()
    previous = champion_get(project_id=model_version.project_id)
    ModelVersion.objects.filter(project_id=model_version.project_id, status=ModelStatus.CHAMPION).exclude(
        pk=model_version.pk
    ).update(status=ModelStatus.RETIRED)
    publish(Event.MODEL_PROMOTED, {
        "project_id": model_version.project_id, "model_version_id": model_version.pk, "version": model_version.version,
        "previous_champion_id": previous.pk if previous else None,
    }, project=model_version.project_id)
    ModelVersion.objects.filter(pk=model_version.pk).update(status=ModelStatus.CHAMPION, promoted_at=now)
    model_version.status, model_version.promoted_at = ModelStatus.CHAMPION, now
    _close_superseded_rescores(model_version)


def _close_superseded_rescores(champion: ModelVersion) -> None:
    """A run still re-scoring for an older champion will never finish: its model is not served."""
    TrainingRun.objects.filter(project_id=champion.project_id, stage="rescore").exclude(
        model_version=champion
    ).update(stage="done")


def challenger_decide(
    *, run: TrainingRun, challenger: ModelVersion, promote: bool, reason: str, evaluated_against: int | None
) -> None:
    """Finish the run with the gate's decision: promote (and re-score the pool) or reject the challenger.

    ``evaluated_against`` is the champion's id the gate compared with (None: there was none). It is
    re-read under the project's row lock: if a manual promotion or a rollback changed the champion
    meanwhile, the comparison no longer holds and the challenger is rejected with that reason.
    """
    now = timezone.now()
    with transaction.atomic():
        if promote:
            Project.objects.select_for_update().get(pk=challenger.project_id)
            current = champion_get(project_id=challenger.project_id)
            if (current.pk if current else None) != evaluated_against:
                promote = False
                reason = (
                    f"not promoted: the champion changed to {f'v{current.version}' if current else 'none'} "
                    "while this challenger was evaluated against another; the next retrain compares with it"
                )
                ModelVersion.objects.filter(pk=challenger.pk).update(decision_reason=reason)
        if promote:
            TrainingRun.objects.filter(pk=run.pk).update(stage="promote", progress=1.0)
            _promote(challenger)
            enqueue(TaskName.RESCORE_POOL, args=(run.pk, challenger.pk))
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
        publish(Event.TRAINING_FINISHED, {
            "project_id": challenger.project_id, "run_id": run.pk, "status": RunStatus.SUCCEEDED,
            "promoted": promote, "model_version_id": challenger.pk, "reason": reason, "error": "",
        }, project=challenger.project_id)


def model_version_promote(*, model_version: ModelVersion, by: Any = None) -> ModelVersion:
    """Make ``model_version`` the champion by hand (admin override of the gate)."""
    if model_version.status == ModelStatus.CHAMPION:
        return model_version
    if model_version.status == ModelStatus.TRAINING or not model_version.artifact_path:
        raise PromotionError(f"v{model_version.version} has no finished artifact")
    with transaction.atomic():
        before = champion_get(project_id=model_version.project_id)
        _promote(model_version)
        enqueue(TaskName.SCORE_PENDING, args=(model_version.project_id,))
        audit_record(
            actor=by, action=AuditAction.MODEL_PROMOTED, project=model_version.project, target=model_version,
            data={"old_champion": before.version if before else None, "new_champion": model_version.version},
        )
    return model_version


def model_version_rollback(*, project: Project, by: Any = None) -> ModelVersion:
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
        publish(Event.MODEL_ROLLED_BACK, {
            "project_id": project.pk, "model_version_id": previous.pk, "version": previous.version,
            "rolled_back_id": current.pk, "rolled_back_version": current.version,
        }, project=project.pk)
        # Documents ingested under the rolled-back model still need this one's predictions.
        enqueue(TaskName.SCORE_PENDING, args=(project.pk,))
        audit_record(
            actor=by, action=AuditAction.MODEL_ROLLED_BACK, project=project, target=previous,
            data={"old_champion": current.version, "new_champion": previous.version},
        )
    previous.refresh_from_db()
    return previous
