"""Bulk import of documents from a file: CSV/TSV, JSON Lines, Parquet or a Hugging Face dataset.

The formats are read by ``import_readers`` (a file in, dict rows out); each row is checked and its
labels placed by ``import_rows`` (which also says what ``labels_as`` and pre-annotations mean).
This module streams the rows in chunks of ``CHUNK_SIZE`` through ``documents.document_bulk_create``
(the same code path as the bulk API endpoint), so a million-row file never sits in memory and every
rule the service applies to posted documents applies here too.

What counts as what:

- **imported**: a new document was created.
- **duplicate**: the row's ``external_id`` already exists in the project with the same text, or, for
  a row without ``external_id``, a document
  with exactly the same text (sha256 of the text) already exists in the project or earlier in the
  file. Exact-text repeats would only spend annotator time and weigh one text twice in training.
- **rejected**: the row cannot become a document; the reason is kept (first ``MAX_REJECTED_KEPT``
  rows): a known ``external_id`` with a different text (a re-import never overwrites a stored
  text), the bulk endpoint's own checks (empty text, a NUL character, text longer than 100,000
  characters, a bad external id) and a gold label that is not in the project's label set. A CSV
  field over ``CSV_FIELD_LIMIT`` characters is its row's error and ends the reading of that file
  (the reader cannot find where the next row starts).

A missing text / label / id column is an error before anything is written (``ImportFileError``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from labeling.models import Annotation, Document, ImportJob, LabelsAs, Project, text_hash
from labeling.services import documents
from labeling.services.import_readers import CHUNK_SIZE, Source, columns_check, detect_format, open_source
from labeling.services.import_rows import (
    RowColumns,
    TrainingLabels,
    columns_to_check,
    gold_labels,
    import_annotator,
    labels_as_check,
    labels_imported,
    project_labelers,
    row_clean,
    rows_check,
    suggestions,
    training_labels,
)
from labeling.services.planner import planner_statistics_refresh

logger = logging.getLogger(__name__)

MAX_REJECTED_KEPT = 1_000

ProgressFn = Callable[[int, int | None], None]  # (rows read so far, total rows or None)


@dataclass
class ImportReport:
    rows_total: int = 0
    imported: int = 0
    labeled: int = 0  # training labels stored (labels_as=training)
    duplicates: int = 0
    rejected: int = 0
    rejected_rows: list[dict[str, Any]] = field(default_factory=list)  # [{row, reason}], first 1,000

    def reject(self, row: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejected_rows) < MAX_REJECTED_KEPT:
            self.rejected_rows.append({"row": row, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_total": self.rows_total,
            "imported": self.imported,
            "labeled": self.labeled,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "rejected_rows": self.rejected_rows,
        }


def _drop_known(project: Project, items: list[dict[str, Any]], seen_hashes: set[str]) -> list[dict[str, Any]]:
    """Rows without an external id whose exact text is already in the project (or earlier in the file)."""
    hashes = {text_hash(it["text"]) for it in items if "external_id" not in it}
    existing = set(
        Document.objects.filter(project=project, content_hash__in=hashes).values_list("content_hash", flat=True)
    )
    kept: list[dict[str, Any]] = []
    for it in items:
        if "external_id" not in it:
            h = text_hash(it["text"])
            if h in existing or h in seen_hashes:
                continue
            seen_hashes.add(h)
        kept.append(it)
    return kept


def _drop_conflicts(
    project: Project, items: list[dict[str, Any]], report: ImportReport, seen_ids: dict[str, str]
) -> list[dict[str, Any]]:
    """Rows whose external id is stored (or earlier in the file) with a different text: rejected."""
    ids = {it["external_id"] for it in items if "external_id" in it}
    stored = dict(
        Document.objects.filter(project=project, external_id__in=ids).values_list("external_id", "content_hash")
    )
    kept: list[dict[str, Any]] = []
    for it in items:
        ext = it.get("external_id")
        if ext is not None:
            h = text_hash(it["text"])
            known = stored.get(ext) or seen_ids.get(ext)
            if known is not None and known != h:
                where = "in the project" if ext in stored else "earlier in the file"
                report.reject(it["_row"], f"external id {ext!r} is stored {where} with a different text")
                continue
            seen_ids.setdefault(ext, h)
        kept.append(it)
    return kept


def _write_chunk(
    project: Project,
    items: list[dict[str, Any]],
    seen: set[str],
    seen_ids: dict[str, str],
    report: ImportReport,
    labels: TrainingLabels | None = None,
) -> None:
    items = _drop_conflicts(project, items, report, seen_ids)
    kept = _drop_known(project, items, seen)
    report.duplicates += len(items) - len(kept)
    if not kept:
        return
    with transaction.atomic():
        results = documents.document_bulk_create(
            project=project,
            items=[{k: v for k, v in it.items() if not (k == "gold_label" or k.startswith("_"))} for it in kept],
        )
        if suggested := suggestions(kept, results):
            Document.objects.bulk_update(suggested, ["suggested_label", "suggested_score"], batch_size=CHUNK_SIZE)
        # Labels are not part of the posted-document shape: they are stored beside it, only on
        # documents this import created (a re-import never rewrites an existing document).
        if labels is not None:
            annotations, gold = training_labels(kept, results, labels)
            Annotation.objects.bulk_create(annotations, batch_size=CHUNK_SIZE)
            # A document closes once it has its labels: without overlap, this one.
            Document.objects.filter(pk__in=[a.document_id for a in annotations], labels_required__lte=1).update(
                is_labeled=True
            )
            report.labeled += len(annotations)
        else:
            gold = gold_labels(kept, results)
        if gold:
            Document.objects.bulk_update(gold, ["gold_label"], batch_size=CHUNK_SIZE)
    created = sum(1 for _, was_created in results if was_created)
    report.imported += created
    report.duplicates += len(kept) - created


def import_file(
    *,
    project: Project,
    path: str | Path,
    fmt: str | None = None,
    text_col: str = "text",
    label_col: str | None = None,
    external_id_col: str | None = None,
    progress: ProgressFn | None = None,
    labels_as: str = LabelsAs.GOLD,
    source_col: str | None = None,
    prediction_col: str | None = None,
    prediction_score_col: str | None = None,
    annotator_col: str | None = None,
    job: ImportJob | None = None,
    actor: Any = None,
) -> ImportReport:
    """Import every row of ``path`` into ``project``; see the module docstring for the counting rules."""
    labels_as_check(labels_as, label_col, annotator_col)
    fmt = fmt or detect_format(path)
    source = open_source(path, fmt)
    columns_check(
        source,
        path,
        {
            "text": text_col,
            "label": label_col,
            "external id": external_id_col,
            "source": source_col,
            "prediction": prediction_col,
            "prediction score": prediction_score_col,
            "annotator": annotator_col,
        },
    )
    columns = RowColumns(
        text=text_col,
        label=label_col,
        external_id=external_id_col,
        source=source_col,
        annotator=annotator_col,
        prediction=prediction_col,
        prediction_score=prediction_score_col,
    )
    return _checked_import(
        project=project,
        source=source,
        rows_again=lambda: open_source(path, fmt).rows,
        cols=columns,
        progress=progress,
        labels_as=labels_as,
        job=job,
        actor=actor,
    )


def import_records(
    *,
    project: Project,
    records: Iterable[dict[str, Any]],
    text_col: str = "text",
    label_col: str | None = None,
    external_id_col: str | None = None,
    progress: ProgressFn | None = None,
    labels_as: str = LabelsAs.GOLD,
    source_col: str | None = None,
    prediction_col: str | None = None,
    prediction_score_col: str | None = None,
    annotator_col: str | None = None,
    actor: Any = None,
) -> ImportReport:
    """Like ``import_file`` for rows already in memory (the built-in datasets)."""
    labels_as_check(labels_as, label_col, annotator_col)
    records = list(records)  # read twice when labels are checked before anything is written
    columns = RowColumns(
        text=text_col,
        label=label_col,
        external_id=external_id_col,
        source=source_col,
        annotator=annotator_col,
        prediction=prediction_col,
        prediction_score=prediction_score_col,
    )
    return _checked_import(
        project=project,
        source=Source(columns=None, total=None, rows=iter(records)),
        rows_again=lambda: iter(records),
        cols=columns,
        progress=progress,
        labels_as=labels_as,
        job=None,
        actor=actor,
    )


def _checked_import(
    *,
    project: Project,
    source: Source,
    rows_again: Callable[[], Iterable[Any]],
    cols: RowColumns,
    progress: ProgressFn | None,
    labels_as: str,
    job: ImportJob | None,
    actor: Any,
) -> ImportReport:
    """Read the label and prediction columns through first (``rows_again``: a fresh pass over the rows),
    so a bad label is a 400 naming its row before anything is written; then import."""
    if check := columns_to_check(labels_as, cols.label, cols.prediction):
        rows_check(
            project=project,
            rows=rows_again(),
            label_cols=check,
            score_col=cols.prediction_score,
            annotator_col=cols.annotator,
        )
    return _import(
        project=project, source=source, cols=cols, progress=progress, labels_as=labels_as, job=job, actor=actor
    )


def _import(
    *,
    project: Project,
    source: Source,
    cols: RowColumns,
    progress: ProgressFn | None,
    labels_as: str,
    job: ImportJob | None,
    actor: Any,
) -> ImportReport:
    space = project.label_space
    labels = None
    if labels_as == LabelsAs.TRAINING:
        annotators = project_labelers(project) if cols.annotator else {}
        labels = TrainingLabels(annotator=import_annotator(), job=job, annotators=annotators)
    report = ImportReport()
    seen: set[str] = set()
    seen_ids: dict[str, str] = {}  # external id -> text hash, for rows earlier in this file
    chunk: list[dict[str, Any]] = []
    for row, raw in enumerate(source.rows, start=1):
        report.rows_total += 1
        item = row_clean(raw, row=row, cols=cols, space=space)
        if isinstance(item, str):
            report.reject(row, item)
        else:
            chunk.append(item)
        if len(chunk) >= CHUNK_SIZE:
            _write_chunk(project, chunk, seen, seen_ids, report, labels)
            chunk = []
            if progress:
                progress(report.rows_total, source.total)
    if chunk:
        _write_chunk(project, chunk, seen, seen_ids, report, labels)
    if progress:
        progress(report.rows_total, source.total)
    planner_statistics_refresh(model=Document, rows_written=report.imported)
    if report.labeled or (job is not None and Annotation.objects.filter(import_job=job).exists()):
        labels_imported(
            project=project,
            stored=report.labeled,
            documents_imported=report.imported,
            job=job,
            actor=actor,
            label_col=cols.label,
            annotator_col=cols.annotator,
        )
    return report
