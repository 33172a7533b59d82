"""Bulk import of documents from a file: CSV/TSV, JSON Lines, Parquet or a Hugging Face dataset.

Rows stream in chunks of ``CHUNK_SIZE`` through ``documents.document_bulk_create`` (the same code
path as the bulk API endpoint), so a million-row file never sits in memory and every rule the
service applies to posted documents applies here too.

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

What the label column becomes (``labels_as``):

- ``gold`` (the default): ``Document.gold_label`` only (for replay and evaluation); never an
  annotation, never shown to annotators. A label outside the label set rejects its row.
- ``training``: every label is checked first, in a pass over the whole file; one label outside the
  label set fails the import before anything is written (``ImportLabelError`` names the row and the
  column). A new pool document gets the label as an ``Annotation`` with source ``import``, by the
  service account ``IMPORT_ANNOTATOR``, recording the import job and the row's ``source_col``: it
  trains models, counts towards consensus, and closes the document in the queue like any label
  (with overlap it is one of the document's labels). A new **holdout** document's label goes to
  ``gold_label`` instead: the holdout stays labeled blind by this project's annotators, so its
  evaluation never takes an outside label for an honest one. A document already stored is never
  relabeled (a re-import counts its rows as duplicates). Once training labels are stored the
  project's retrain rule is checked at once: a labeled file in an empty project queues its first run.

Pre-annotations (``prediction_col``, optional ``prediction_score_col``): an external model's label
for a row, stored on the new document as ``suggested_label`` / ``suggested_score``. The labeling page
shows it as a suggestion (never on a blind holdout item); it is never trained on: an annotator who
accepts it gives that label as their own. Predicted labels and scores are checked first like
training labels: one outside the label set (or a score that is not a number in 0-1) stores nothing.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db import transaction

from labeling import jsonbounds
from labeling.labelspace import LabelSpace
from labeling.models import (
    Annotation,
    AnnotationSource,
    AuditAction,
    Document,
    ImportJob,
    LabelsAs,
    Project,
    RunTrigger,
    Split,
    text_hash,
)
from labeling.services import documents
from labeling.services.audit import audit_record
from labeling.services.planner import planner_statistics_refresh
from labeling.services.training.triggers import project_check_retrain

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1_000
CSV_FIELD_LIMIT = 2 * documents.MAX_TEXT_CHARS  # characters in one CSV field
MAX_REJECTED_KEPT = 1_000
FORMATS = ("csv", "tsv", "jsonl", "parquet", "hf", "hub")

ProgressFn = Callable[[int, int | None], None]  # (rows read so far, total rows or None)


class ImportFileError(ValueError):
    """The file cannot be imported at all (unreadable, unknown format, missing column)."""


class ImportLabelError(ImportFileError):
    """A training label, predicted label or score that cannot be stored: the import stores nothing."""

    def __init__(self, *, row: int, column: str, problem: str) -> None:
        self.row, self.column = row, column
        super().__init__(f"row {row}: {column!r} {problem}; nothing was imported")


#: The account imported training labels are given by (inactive: it never signs in).
IMPORT_ANNOTATOR = "alabel-import"


def import_annotator() -> Any:
    """The service account that gives imported training labels, created on first use."""
    from django.contrib.auth import get_user_model

    user, created = get_user_model().objects.get_or_create(
        username=IMPORT_ANNOTATOR, defaults={"is_active": False}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


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
            "rows_total": self.rows_total, "imported": self.imported, "labeled": self.labeled,
            "duplicates": self.duplicates,
            "rejected": self.rejected, "rejected_rows": self.rejected_rows,
        }


# ---------------------------------------------------------------------------------------------
# Readers: each yields plain dict rows and knows its columns before the first row is written.


def detect_format(path: str | Path) -> str:
    """The format of ``path``: from its suffix, a ``save_to_disk`` folder, else a hub name."""
    p = Path(path)
    if p.is_dir():
        return "hf"
    suffix = p.suffix.lower()
    if suffix in (".csv", ".tsv", ".parquet"):
        return suffix[1:]
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".pq":
        return "parquet"
    if not p.exists() and "/" in str(path) and not suffix:
        return "hub"
    raise ImportFileError(f"cannot tell the format of {path}; use --format {'/'.join(FORMATS)}")


@dataclass
class _Source:
    columns: list[str] | None  # None when rows may differ (JSON Lines: checked per row)
    total: int | None
    rows: Iterator[dict[str, Any]]


def _open_csv(path: Path, delimiter: str) -> _Source:
    # A field may be a little over the text limit (rejected per row, with its length, by the text
    # check); past CSV_FIELD_LIMIT the reader stops rather than hold an unbounded field in memory.
    csv.field_size_limit(CSV_FIELD_LIMIT)
    fh = path.open(newline="", encoding="utf-8-sig")
    try:
        reader = csv.DictReader(fh, delimiter=delimiter)
        columns = list(reader.fieldnames or [])
    except csv.Error as exc:
        fh.close()
        raise ImportFileError(f"{path}: the header line cannot be read: {exc}") from exc

    def rows() -> Iterator[dict[str, Any]]:
        with fh:
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    # After an oversized (possibly multi-line, quoted) field the reader cannot tell
                    # where the next row starts: reading on could import fragments of it as rows.
                    yield {
                        "__error__": f"line {reader.line_num}: {exc}; the rows after it were not read "
                        "(fix the file and import it again: rows already imported count as duplicates)"
                    }
                    return
                yield row

    return _Source(columns=columns, total=None, rows=rows())


def _open_jsonl(path: Path) -> _Source:
    def rows() -> Iterator[dict[str, Any]]:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    value = jsonbounds.loads(line)
                except json.JSONDecodeError as exc:
                    value = {"__error__": f"invalid JSON: {exc.msg}"}
                except ValueError as exc:  # nested too deeply, an integer of thousands of digits ...
                    value = {"__error__": f"invalid JSON: {exc}"}
                yield value if isinstance(value, dict) else {"__error__": "line is not a JSON object"}

    # Peek at the first object so a wrong column name fails before anything is written.
    first = next(rows(), None)
    columns = list(first) if isinstance(first, dict) and "__error__" not in first else None
    return _Source(columns=columns, total=None, rows=rows())


def _open_parquet(path: Path) -> _Source:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)

    def rows() -> Iterator[dict[str, Any]]:
        for batch in pf.iter_batches(batch_size=CHUNK_SIZE):
            yield from batch.to_pylist()

    return _Source(columns=list(pf.schema_arrow.names), total=pf.metadata.num_rows, rows=rows())


def _open_hf(path: str, *, hub: bool) -> _Source:
    import datasets

    if hub:
        ds = datasets.load_dataset(path, split="train")
    else:
        ds = datasets.load_from_disk(path)
        if isinstance(ds, datasets.DatasetDict):
            split = "train" if "train" in ds else next(iter(ds))
            ds = ds[split]
    label_feature = ds.features.get("label") if hasattr(ds, "features") else None

    def rows() -> Iterator[dict[str, Any]]:
        for batch in ds.iter(batch_size=CHUNK_SIZE):
            keys = list(batch)
            for i in range(len(batch[keys[0]]) if keys else 0):
                yield {k: batch[k][i] for k in keys}

    source = _Source(columns=list(ds.column_names), total=len(ds), rows=rows())
    # ClassLabel columns hold integers; import their names, which is what a user labels with.
    if label_feature is not None and hasattr(label_feature, "int2str"):
        source.rows = ({**r, "label": label_feature.int2str(r["label"])} for r in source.rows)
    return source


def open_source(path: str | Path, fmt: str) -> _Source:
    if fmt not in FORMATS:
        raise ImportFileError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "hub":
        return _open_hf(str(path), hub=True)
    p = Path(path)
    if not p.exists():
        raise ImportFileError(f"{p} does not exist")
    try:
        if fmt in ("csv", "tsv"):
            return _open_csv(p, "\t" if fmt == "tsv" else ",")
        if fmt == "jsonl":
            return _open_jsonl(p)
        if fmt == "parquet":
            return _open_parquet(p)
        return _open_hf(str(p), hub=False)
    except ImportFileError:
        raise
    except Exception as exc:  # noqa: BLE001 - each library raises its own; the user needs one line
        raise ImportFileError(f"cannot read {p} as {fmt}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# The import


def _check_columns(source: _Source, path: str | Path, wanted: dict[str, str | None]) -> None:
    if source.columns is None:
        return
    for role, name in wanted.items():
        if name and name not in source.columns:
            raise ImportFileError(
                f"{path}: {role} column {name!r} not found (columns: {', '.join(map(str, source.columns))})"
            )


def _clean_row(
    raw: dict[str, Any], *, row: int, text_col: str, label_col: str | None, external_id_col: str | None,
    source_col: str | None, space: LabelSpace, report: ImportReport, prediction: tuple[str, str | None] | None,
) -> dict[str, Any] | None:
    """The document fields for one row, or None (and a recorded reason) when it is rejected."""
    if "__error__" in raw:
        report.reject(row, raw["__error__"])
        return None
    if text_col not in raw:
        report.reject(row, f"missing {text_col!r}")
        return None
    value = raw[text_col]
    text = "" if value is None else str(value)
    # The same checks the bulk endpoint applies (empty, NUL, too long ...), one reason per row.
    problem = documents.text_problem(text)
    if problem is not None:
        report.reject(row, f"text {problem}")
        return None
    item: dict[str, Any] = {"text": text, "_row": row}
    if external_id_col:
        ext = raw.get(external_id_col)
        ext = None if ext is None else str(ext).strip()
        if ext:
            problem = documents.text_problem(ext, max_chars=documents.MAX_EXTERNAL_ID_CHARS)
            if problem is None and len(ext) > documents.MAX_EXTERNAL_ID_CHARS:
                problem = f"must be at most {documents.MAX_EXTERNAL_ID_CHARS} characters"
            if problem is not None:
                report.reject(row, f"external id {problem}")
                return None
            item["external_id"] = ext
    if label_col:
        try:
            gold = space.answer_from_cell(raw.get(label_col))
        except ValueError as problem:
            report.reject(row, f"label {problem}")
            return None
        if gold is not None:
            item["gold_label"] = gold
            if source_col and raw.get(source_col) is not None:
                item["_source"] = str(raw[source_col]).strip()[:200]
    if prediction is not None:
        suggested = space.answer_from_cell(raw.get(prediction[0]))  # checked before the import (``rows_check``)
        if suggested is not None:
            item["_suggested"] = (suggested, _score(raw.get(prediction[1])) if prediction[1] else None)
    return item


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _score(value: Any) -> float | None:
    """A score in [0, 1], None when empty; ``ValueError`` otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    score = float(value)
    if not 0.0 <= score <= 1.0:  # NaN fails too
        raise ValueError(score)
    return score


def _drop_known(project: Project, items: list[dict[str, Any]], seen_hashes: set[str]) -> list[dict[str, Any]]:
    """Rows without an external id whose exact text is already in the project (or earlier in the file)."""
    hashes = {text_hash(it["text"]) for it in items if "external_id" not in it}
    existing = set(
        Document.objects.filter(project=project, content_hash__in=hashes)
        .values_list("content_hash", flat=True)
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


@dataclass
class _Labels:
    """Where a training import's labels go: who gives them and which job brought them."""

    annotator: Any
    job: ImportJob | None


def _label_training(
    kept: list[dict[str, Any]], results: list[tuple[Document, bool]], labels: _Labels
) -> tuple[list[Annotation], list[Document]]:
    """Annotations for new pool documents; new holdout documents keep their label as gold (labeled blind)."""
    annotations: list[Annotation] = []
    gold: list[Document] = []
    for item, (doc, was_created) in zip(kept, results, strict=True):
        if not (was_created and item.get("gold_label") is not None):  # "" is a multi-label empty set
            continue
        if doc.split == Split.HOLDOUT:
            doc.gold_label = item["gold_label"]
            gold.append(doc)
            continue
        annotations.append(Annotation(
            document=doc, annotator=labels.annotator, label=item["gold_label"], source=AnnotationSource.IMPORT,
            import_job=labels.job, import_source=item.get("_source", ""),
        ))
    return annotations, gold


def _write_chunk(
    project: Project, items: list[dict[str, Any]], seen: set[str], seen_ids: dict[str, str], report: ImportReport,
    labels: _Labels | None = None,
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
        suggested = []
        for item, (doc, was_created) in zip(kept, results, strict=True):
            if was_created and "_suggested" in item:
                doc.suggested_label, doc.suggested_score = item["_suggested"]
                suggested.append(doc)
        if suggested:
            Document.objects.bulk_update(suggested, ["suggested_label", "suggested_score"], batch_size=CHUNK_SIZE)
        # Labels are not part of the posted-document shape: they are stored beside it, only on
        # documents this import created (a re-import never rewrites an existing document).
        gold = []
        if labels is not None:
            annotations, gold = _label_training(kept, results, labels)
            Annotation.objects.bulk_create(annotations, batch_size=CHUNK_SIZE)
            # A document closes once it has its labels: without overlap, this one.
            Document.objects.filter(
                pk__in=[a.document_id for a in annotations], labels_required__lte=1
            ).update(is_labeled=True)
            report.labeled += len(annotations)
        else:
            for item, (doc, was_created) in zip(kept, results, strict=True):
                if was_created and item.get("gold_label") is not None:
                    doc.gold_label = item["gold_label"]
                    gold.append(doc)
        if gold:
            Document.objects.bulk_update(gold, ["gold_label"], batch_size=CHUNK_SIZE)
    created = sum(1 for _, was_created in results if was_created)
    report.imported += created
    report.duplicates += len(kept) - created


def _check_training(labels_as: str, label_col: str | None) -> None:
    if labels_as not in LabelsAs.values:
        raise ImportFileError(f"labels_as must be one of {', '.join(LabelsAs.values)}, not {labels_as!r}")
    if labels_as == LabelsAs.TRAINING and not label_col:
        raise ImportFileError("labels_as=training needs a label column (label_col)")


def rows_check(
    *, project: Project, rows: Iterable[dict[str, Any]], label_cols: list[str], score_col: str | None = None
) -> None:
    """Every non-empty value of ``label_cols`` is in the label set, every score a number in 0-1.

    Else ``ImportLabelError`` naming the first bad row and its column: read before anything is written.
    """
    space = project.label_space
    for row, raw in enumerate(rows, start=1):
        if not isinstance(raw, dict):
            continue
        for column in label_cols:
            try:  # one name, or a multi-label set (a list, or names joined by ","): the label space says
                space.answer_from_cell(raw.get(column))
            except ValueError as problem:
                known = ", ".join(space.names)
                raise ImportLabelError(
                    row=row, column=column, problem=f"is not valid: {problem} (labels: {known})"
                ) from None
        if score_col:
            try:
                _score(raw.get(score_col))
            except (TypeError, ValueError):
                raise ImportLabelError(row=row, column=score_col,
                                       problem=f"is {raw.get(score_col)!r}, not a number from 0 to 1") from None


def _needs_check(labels_as: str, label_col: str | None, prediction_col: str | None) -> list[str]:
    """The columns to read through before writing: training labels and predicted labels."""
    cols = [label_col] if labels_as == LabelsAs.TRAINING and label_col else []
    return cols + ([prediction_col] if prediction_col else [])


def import_file(
    *, project: Project, path: str | Path, fmt: str | None = None, text_col: str = "text",
    label_col: str | None = None, external_id_col: str | None = None, progress: ProgressFn | None = None,
    labels_as: str = LabelsAs.GOLD, source_col: str | None = None, prediction_col: str | None = None,
    prediction_score_col: str | None = None, job: ImportJob | None = None, actor: Any = None,
) -> ImportReport:
    """Import every row of ``path`` into ``project``; see the module docstring for the counting rules."""
    _check_training(labels_as, label_col)
    fmt = fmt or detect_format(path)
    source = open_source(path, fmt)
    _check_columns(source, path, {"text": text_col, "label": label_col, "external id": external_id_col,
                                  "source": source_col, "prediction": prediction_col,
                                  "prediction score": prediction_score_col})
    if cols := _needs_check(labels_as, label_col, prediction_col):
        rows_check(project=project, rows=open_source(path, fmt).rows, label_cols=cols, score_col=prediction_score_col)
    return _import(project=project, source=source, text_col=text_col, label_col=label_col,
                   external_id_col=external_id_col, progress=progress, labels_as=labels_as,
                   source_col=source_col, prediction_col=prediction_col,
                   prediction_score_col=prediction_score_col, job=job, actor=actor)


def import_records(
    *, project: Project, records: Iterable[dict[str, Any]], text_col: str = "text",
    label_col: str | None = None, external_id_col: str | None = None, progress: ProgressFn | None = None,
    labels_as: str = LabelsAs.GOLD, source_col: str | None = None, prediction_col: str | None = None,
    prediction_score_col: str | None = None, actor: Any = None,
) -> ImportReport:
    """Like ``import_file`` for rows already in memory (the built-in datasets)."""
    _check_training(labels_as, label_col)
    if cols := _needs_check(labels_as, label_col, prediction_col):
        records = list(records)
        rows_check(project=project, rows=records, label_cols=cols, score_col=prediction_score_col)
    source = _Source(columns=None, total=None, rows=iter(records))
    return _import(project=project, source=source, text_col=text_col, label_col=label_col,
                   external_id_col=external_id_col, progress=progress, labels_as=labels_as,
                   source_col=source_col, prediction_col=prediction_col,
                   prediction_score_col=prediction_score_col, job=None, actor=actor)


def _labels_imported(*, project: Project, report: ImportReport, job: ImportJob | None, actor: Any,
                     label_col: str | None) -> None:
    """Audit the stored training labels, then check the retrain rule (a first model, at once).

    Labels are written chunk by chunk (a resumable job), so the record follows the last chunk; a job
    resumed after its worker died counts every label it stored, not only this attempt's.
    """
    labels = Annotation.objects.filter(import_job=job).count() if job is not None else report.labeled
    with transaction.atomic():
        audit_record(
            actor=actor, action=AuditAction.LABELS_IMPORTED, project=project, target=job,
            data={"import_job": job.pk if job else None, "labels": labels, "label_col": label_col,
                  "documents": report.imported},
        )
    project_check_retrain(project_id=project.pk, trigger=RunTrigger.THRESHOLD)


def _import(
    *, project: Project, source: _Source, text_col: str, label_col: str | None,
    external_id_col: str | None, progress: ProgressFn | None, labels_as: str = LabelsAs.GOLD,
    source_col: str | None = None, prediction_col: str | None = None, prediction_score_col: str | None = None,
    job: ImportJob | None = None, actor: Any = None,
) -> ImportReport:
    space = project.label_space
    prediction = (prediction_col, prediction_score_col) if prediction_col else None
    labels = _Labels(annotator=import_annotator(), job=job) if labels_as == LabelsAs.TRAINING else None
    report = ImportReport()
    seen: set[str] = set()
    seen_ids: dict[str, str] = {}  # external id -> text hash, for rows earlier in this file
    chunk: list[dict[str, Any]] = []
    for row, raw in enumerate(source.rows, start=1):
        report.rows_total += 1
        item = _clean_row(raw, row=row, text_col=text_col, label_col=label_col,
                          external_id_col=external_id_col, source_col=source_col, space=space, report=report,
                          prediction=prediction)
        if item is not None:
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
        _labels_imported(project=project, report=report, job=job, actor=actor, label_col=label_col)
    return report


def file_label_names(*, path: str | Path, fmt: str | None = None, label_col: str) -> list[str]:
    """The distinct non-empty values of ``label_col``, sorted: a project's label set for a new file."""
    fmt = fmt or detect_format(path)
    source = open_source(path, fmt)
    _check_columns(source, path, {"label": label_col})
    names = {str(r[label_col]).strip() for r in source.rows if r.get(label_col) not in (None, "")}
    return sorted(n for n in names if n)
