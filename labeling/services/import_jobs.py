"""An import job's life: started from an upload, claimed under an advisory lock, resumed, its file deleted.

- ``import_job_start`` streams the upload to ``UPLOAD_DIR`` and queues the job; with
  ``labels_as=training`` it reads the file once first, so a bad label is a 400 and stores nothing.

- A running job's worker holds ``(LOCK_IMPORT, job id)`` for as long as it imports. A job marked
  running whose lock is free was left by a worker that died (killed, out of memory): the beat's
  ``imports_reconcile`` queues it again, and the next start resumes it (rows already stored count
  as duplicates). A job that has killed its worker ``IMPORT_MAX_ATTEMPTS`` times is failed instead.
- A job queued while the broker was down never received its message: after
  ``IMPORT_REQUEUE_AFTER_S`` the reconciliation sends it again.
- The uploaded file is deleted once the job is finished (succeeded or failed); the reconciliation
  deletes leftovers (files no open job names, older than the requeue delay).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from labeling.models import ImportJob, LabelsAs, Project, RunStatus
from labeling.services import modeling
from labeling.services.dispatch import TaskName, enqueue
from labeling.services.events import Event, publish
from labeling.services.import_readers import ImportFileError, open_source
from labeling.services.import_rows import ImportLabelError, rows_check
from labeling.services.imports import import_file

logger = logging.getLogger(__name__)

#: Starts of one import before it is failed: a file that kills its worker each time is not retried forever.
IMPORT_MAX_ATTEMPTS = 3
OPEN = (RunStatus.QUEUED, RunStatus.RUNNING)

UPLOAD_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def _upload_check(*, project: Project, path: Path, fmt: str, columns: dict[str, str], labels_as: str) -> None:
    """Training labels and predictions are checked before the job exists: a bad one is a 400 storing nothing."""
    for only_training in ("source_col", "annotator_col"):
        if labels_as != LabelsAs.TRAINING and columns[only_training]:
            raise ValidationError({only_training: "only with labels_as=training"})
    if labels_as == LabelsAs.TRAINING and not columns["label_col"]:
        raise ValidationError({"label_col": "labels_as=training needs the label column"})
    if columns["prediction_score_col"] and not columns["prediction_col"]:
        raise ValidationError({"prediction_score_col": "only with prediction_col"})
    checked = ["label_col"] if labels_as == LabelsAs.TRAINING else []
    checked += ["prediction_col"] if columns["prediction_col"] else []
    if not checked:
        return
    annotator_col = columns["annotator_col"] or None
    fields = {columns[f]: f for f in [*checked, *(["annotator_col"] if annotator_col else [])]}
    try:
        source = open_source(path, fmt)
        for field, column in columns.items():
            if column and source.columns is not None and column not in source.columns:
                raise ValidationError({field: f"column {column!r} not found (columns: {', '.join(source.columns)})"})
        rows_check(project=project, rows=source.rows, label_cols=[columns[f] for f in checked],
                   score_col=columns["prediction_score_col"] or None, annotator_col=annotator_col)
    except ImportLabelError as exc:
        raise ValidationError({fields.get(exc.column, "prediction_score_col"): str(exc)}) from exc
    except ImportFileError as exc:
        raise ValidationError({"file": str(exc)}) from exc


def import_job_start(
    *,
    project: Project,
    filename: str,
    chunks: Iterable[bytes],
    file_format: str | None,
    text_col: str,
    external_id_col: str = "",
    label_col: str = "",
    labels_as: str = LabelsAs.GOLD,
    source_col: str = "",
    prediction_col: str = "",
    prediction_score_col: str = "",
    annotator_col: str = "",
    created_by: Any = None,
) -> ImportJob:
    """Stream an uploaded file into UPLOAD_DIR, record an ImportJob and queue the import worker.

    With ``labels_as=training`` or a ``prediction_col`` the file is read once here: a missing column, a
    label outside the label set, a bad score or an ``annotator_col`` username that is not a member who
    labels is a ``ValidationError`` naming the field (and the row), and nothing is stored.
    """
    fmt = file_format or UPLOAD_FORMATS.get(Path(filename).suffix.lower())
    if fmt not in set(UPLOAD_FORMATS.values()):
        raise ValidationError({"format": f"give format= one of csv, tsv, jsonl, parquet (file {filename!r})"})
    folder = Path(settings.UPLOAD_DIR) / str(project.pk)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{uuid.uuid4().hex}.{fmt}"
    size = 0
    with open(target, "wb") as out:
        for chunk in chunks:
            size += len(chunk)
            if size > settings.MAX_UPLOAD_BYTES:
                out.close()
                target.unlink(missing_ok=True)
                raise ValidationError({"file": f"larger than the {settings.MAX_UPLOAD_BYTES:,}-byte limit"})
            out.write(chunk)
    if size == 0:
        target.unlink(missing_ok=True)
        raise ValidationError({"file": "the file is empty"})
    try:
        columns = {"text_col": text_col, "label_col": label_col, "external_id_col": external_id_col,
                   "source_col": source_col, "prediction_col": prediction_col,
                   "prediction_score_col": prediction_score_col, "annotator_col": annotator_col}
        _upload_check(project=project, path=target, fmt=fmt, columns=columns, labels_as=labels_as)
    except ValidationError:
        target.unlink(missing_ok=True)
        raise
    with transaction.atomic():
        job = ImportJob.objects.create(
            project=project,
            file_path=str(target),
            file_format=fmt,
            text_col=text_col,
            external_id_col=external_id_col,
            label_col=label_col,
            labels_as=labels_as,
            source_col=source_col,
            prediction_col=prediction_col,
            prediction_score_col=prediction_score_col,
            annotator_col=annotator_col,
            created_by=created_by,
        )
        enqueue(TaskName.IMPORT_FILE, args=(job.id,))
    return job


def _claim(job_id: int) -> ImportJob | None:
    """Queued (or running with its lock free: its worker died) -> running, one attempt more; else None."""
    with transaction.atomic():
        job = ImportJob.objects.select_for_update(skip_locked=True).filter(pk=job_id).select_related("project").first()
        if job is None or job.status not in OPEN:
            return None  # gone, taken by another worker, or done: a redelivered message is a no-op
        if job.attempts >= IMPORT_MAX_ATTEMPTS:
            _finish(job, status=RunStatus.FAILED,
                    error=f"failed after {job.attempts} attempts: the worker died each time")
            return None
        job.status, job.attempts = RunStatus.RUNNING, job.attempts + 1
        if job.attempts > 1:
            job.detail = f"resumed after its worker stopped (attempt {job.attempts} of {IMPORT_MAX_ATTEMPTS})"
        job.save(update_fields=["status", "attempts", "detail"])
        return job


def _finish(job: ImportJob, *, status: str, error: str = "", **fields: Any) -> None:
    with transaction.atomic():
        ImportJob.objects.filter(pk=job.pk).update(status=status, error=error[:2000],
                                                   finished_at=timezone.now(), **fields)
        counts = {f"{k}": v for k, v in fields.items() if k.startswith("rows_")}
        publish(Event.IMPORT_FINISHED, {"project_id": job.project_id, "import_job_id": job.pk, "status": status,
                                        "error": error[:2000], **counts}, project=job.project_id)
    Path(job.file_path).unlink(missing_ok=True)  # the upload is not needed once the job is finished


def import_job_run(job_id: int) -> ImportJob | None:
    """Run (or resume) an ImportJob (the IMPORT_FILE task); a job finished or held by a live worker is left alone."""
    with modeling.lock_held(modeling.LOCK_IMPORT, job_id) as got:
        if not got:
            return ImportJob.objects.filter(pk=job_id).first()  # a live worker is importing it
        job = _claim(job_id)
        if job is None:
            return ImportJob.objects.filter(pk=job_id).first()

        def progress(rows: int, total: int | None) -> None:
            fields: dict[str, Any] = {"rows_total": rows}
            if total:
                fields["progress"] = min(rows / total, 1.0)
            ImportJob.objects.filter(pk=job_id).update(**fields)

        try:
            report = import_file(
                project=job.project, path=job.file_path, fmt=job.file_format or None, text_col=job.text_col,
                label_col=job.label_col or None, external_id_col=job.external_id_col or None, progress=progress,
                labels_as=job.labels_as, source_col=job.source_col or None, prediction_col=job.prediction_col or None,
                prediction_score_col=job.prediction_score_col or None, annotator_col=job.annotator_col or None,
                job=job, actor=job.created_by,
            )
        except Exception as exc:
            # A user error (bad column, unreadable file) or a crash: either way the job must not stay
            # "running" forever. Rows written before the failure stay; re-importing counts them as duplicates.
            _finish(job, status=RunStatus.FAILED, error=str(exc))
            if not isinstance(exc, ImportFileError):
                raise
            return ImportJob.objects.get(pk=job_id)
        _finish(
            job, status=RunStatus.SUCCEEDED, progress=1.0, rows_total=report.rows_total,
            rows_imported=report.imported, rows_labeled=report.labeled,
            rows_duplicate=report.duplicates, rows_rejected=report.rejected,
            rejected=report.rejected_rows,
        )
        logger.info("import job %s: %s imported, %s duplicates, %s rejected", job_id, report.imported,
                    report.duplicates, report.rejected)
        return ImportJob.objects.get(pk=job_id)


def _requeue(job: ImportJob, detail: str) -> None:
    ImportJob.objects.filter(pk=job.pk).update(status=RunStatus.QUEUED, queued_at=timezone.now(), detail=detail)
    enqueue(TaskName.IMPORT_FILE, args=(job.pk,))


def imports_reconcile() -> dict[str, Any]:
    """Beat: resume imports whose worker died, resend imports whose message was lost, delete leftover files."""
    resumed, resent = [], []
    for job in ImportJob.objects.filter(status=RunStatus.RUNNING):
        if modeling.lock_is_free(modeling.LOCK_IMPORT, job.pk):
            _requeue(job, f"its worker stopped after attempt {job.attempts}; queued again")
            resumed.append(job.pk)
    cutoff = timezone.now() - timedelta(seconds=settings.IMPORT_REQUEUE_AFTER_S)
    for job in ImportJob.objects.filter(status=RunStatus.QUEUED, queued_at__lt=cutoff):
        _requeue(job, "its message was not delivered in time; sent again")
        resent.append(job.pk)
    deleted = uploads_sweep(older_than=cutoff)
    if resumed or resent or deleted:
        logger.warning("imports reconcile: resumed %s, resent %s, deleted %s leftover uploads",
                       resumed, resent, deleted)
    return {"imports_resumed": resumed, "imports_resent": resent, "uploads_deleted": deleted}


def uploads_sweep(*, older_than: Any) -> int:
    """Delete uploaded files that no open job names and that are older than ``older_than``."""
    root = Path(settings.UPLOAD_DIR)
    if not root.exists():
        return 0
    wanted = {Path(p) for p in ImportJob.objects.filter(status__in=OPEN).values_list("file_path", flat=True)}
    deleted = 0
    for path in root.glob("*/*"):
        modified = datetime.fromtimestamp(path.stat().st_mtime, tz=UTC)
        if path.is_file() and path not in wanted and modified < older_than:
            path.unlink(missing_ok=True)
            deleted += 1
    return deleted
