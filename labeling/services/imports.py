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
Gold labels go to ``Document.gold_label`` only (for replay and evaluation); they are never
annotations and never shown to annotators.
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
from labeling.models import Document, Project, text_hash
from labeling.services import documents
from labeling.services.planner import planner_statistics_refresh

logger = logging.getLogger(__name__)

CHUNK_SIZE = 1_000
CSV_FIELD_LIMIT = 2 * documents.MAX_TEXT_CHARS  # characters in one CSV field
MAX_REJECTED_KEPT = 1_000
FORMATS = ("csv", "tsv", "jsonl", "parquet", "hf", "hub")

ProgressFn = Callable[[int, int | None], None]  # (rows read so far, total rows or None)


class ImportFileError(ValueError):
    """The file cannot be imported at all (unreadable, unknown format, missing column)."""


@dataclass
class ImportReport:
    rows_total: int = 0
    imported: int = 0
    duplicates: int = 0
    rejected: int = 0
    rejected_rows: list[dict[str, Any]] = field(default_factory=list)  # [{row, reason}], first 1,000

    def reject(self, row: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejected_rows) < MAX_REJECTED_KEPT:
            self.rejected_rows.append({"row": row, "reason": reason})

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows_total": self.rows_total, "imported": self.imported, "duplicates": self.duplicates,
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
    space: LabelSpace, report: ImportReport,
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
        gold = raw.get(label_col)
        gold = None if gold is None else str(gold).strip()
        if gold:
            if gold not in space:
                report.reject(row, f"label {gold!r} is not in the project's label set")
                return None
            item["gold_label"] = gold
    return item


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


def _write_chunk(
    project: Project, items: list[dict[str, Any]], seen: set[str], seen_ids: dict[str, str], report: ImportReport
) -> None:
    items = _drop_conflicts(project, items, report, seen_ids)
    kept = _drop_known(project, items, seen)
    report.duplicates += len(items) - len(kept)
    if not kept:
        return
    with transaction.atomic():
        results = documents.document_bulk_create(
            project=project,
            items=[{k: v for k, v in it.items() if k not in ("gold_label", "_row")} for it in kept],
        )
        # Gold labels are not part of the posted-document shape: they are stored beside it, only on
        # documents this import created (a re-import never rewrites an existing document).
        gold = []
        for item, (doc, was_created) in zip(kept, results, strict=True):
            if was_created and item.get("gold_label"):
                doc.gold_label = item["gold_label"]
                gold.append(doc)
        if gold:
            Document.objects.bulk_update(gold, ["gold_label"], batch_size=CHUNK_SIZE)
    created = sum(1 for _, was_created in results if was_created)
    report.imported += created
    report.duplicates += len(kept) - created


def import_file(
    *, project: Project, path: str | Path, fmt: str | None = None, text_col: str = "text",
    label_col: str | None = None, external_id_col: str | None = None, progress: ProgressFn | None = None,
) -> ImportReport:
    """Import every row of ``path`` into ``project``; see the module docstring for the counting rules."""
    fmt = fmt or detect_format(path)
    source = open_source(path, fmt)
    _check_columns(source, path, {"text": text_col, "label": label_col, "external id": external_id_col})
    return _import(project=project, source=source, text_col=text_col, label_col=label_col,
                   external_id_col=external_id_col, progress=progress)


def import_records(
    *, project: Project, records: Iterable[dict[str, Any]], text_col: str = "text",
    label_col: str | None = None, external_id_col: str | None = None, progress: ProgressFn | None = None,
) -> ImportReport:
    """Like ``import_file`` for rows already in memory (the built-in datasets)."""
    source = _Source(columns=None, total=None, rows=iter(records))
    return _import(project=project, source=source, text_col=text_col, label_col=label_col,
                   external_id_col=external_id_col, progress=progress)


def _import(
    *, project: Project, source: _Source, text_col: str, label_col: str | None,
    external_id_col: str | None, progress: ProgressFn | None,
) -> ImportReport:
    space = project.label_space
    report = ImportReport()
    seen: set[str] = set()
    seen_ids: dict[str, str] = {}  # external id -> text hash, for rows earlier in this file
    chunk: list[dict[str, Any]] = []
    for row, raw in enumerate(source.rows, start=1):
        report.rows_total += 1
        item = _clean_row(raw, row=row, text_col=text_col, label_col=label_col,
                          external_id_col=external_id_col, space=space, report=report)
        if item is not None:
            chunk.append(item)
        if len(chunk) >= CHUNK_SIZE:
            _write_chunk(project, chunk, seen, seen_ids, report)
            chunk = []
            if progress:
                progress(report.rows_total, source.total)
    if chunk:
        _write_chunk(project, chunk, seen, seen_ids, report)
    if progress:
        progress(report.rows_total, source.total)
    planner_statistics_refresh(model=Document, rows_written=report.imported)
    return report


def file_label_names(*, path: str | Path, fmt: str | None = None, label_col: str) -> list[str]:
    """The distinct non-empty values of ``label_col``, sorted: a project's label set for a new file."""
    fmt = fmt or detect_format(path)
    source = open_source(path, fmt)
    _check_columns(source, path, {"label": label_col})
    names = {str(r[label_col]).strip() for r in source.rows if r.get(label_col) not in (None, "")}
    return sorted(n for n in names if n)
