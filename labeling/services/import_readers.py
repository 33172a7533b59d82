"""The import formats: a file (or a hub name) in, plain dict rows out.

CSV/TSV, JSON Lines, Parquet, a ``datasets.save_to_disk`` folder and a Hugging Face hub name.
Each reader streams its rows and knows its columns before the first row is written, so a wrong
column name fails before anything is stored. A reader never decides what a row means: a line it
cannot read becomes a row ``{"__error__": reason}`` for the import to reject (``import_rows``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from labeling import jsonbounds
from labeling.services.documents import MAX_TEXT_CHARS

CHUNK_SIZE = 1_000  # rows per batch read from Parquet / datasets, and per write
CSV_FIELD_LIMIT = 2 * MAX_TEXT_CHARS  # characters in one CSV field
FORMATS = ("csv", "tsv", "jsonl", "parquet", "hf", "hub")
ERROR_KEY = "__error__"  # a row the reader could not read: its value is the reason


class ImportFileError(ValueError):
    """The file cannot be imported at all (unreadable, unknown format, missing column)."""


@dataclass
class Source:
    columns: list[str] | None  # None when rows may differ (JSON Lines: checked per row)
    total: int | None
    rows: Iterator[dict[str, Any]]


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


def _open_csv(path: Path, delimiter: str) -> Source:
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
                        ERROR_KEY: f"line {reader.line_num}: {exc}; the rows after it were not read "
                        "(fix the file and import it again: rows already imported count as duplicates)"
                    }
                    return
                yield row

    return Source(columns=columns, total=None, rows=rows())


def _open_jsonl(path: Path) -> Source:
    def rows() -> Iterator[dict[str, Any]]:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    value = jsonbounds.loads(line)
                except json.JSONDecodeError as exc:
                    value = {ERROR_KEY: f"invalid JSON: {exc.msg}"}
                except ValueError as exc:  # nested too deeply, an integer of thousands of digits ...
                    value = {ERROR_KEY: f"invalid JSON: {exc}"}
                yield value if isinstance(value, dict) else {ERROR_KEY: "line is not a JSON object"}

    # Peek at the first object so a wrong column name fails before anything is written.
    first = next(rows(), None)
    columns = list(first) if isinstance(first, dict) and ERROR_KEY not in first else None
    return Source(columns=columns, total=None, rows=rows())


def _open_parquet(path: Path) -> Source:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)

    def rows() -> Iterator[dict[str, Any]]:
        for batch in pf.iter_batches(batch_size=CHUNK_SIZE):
            yield from batch.to_pylist()

    return Source(columns=list(pf.schema_arrow.names), total=pf.metadata.num_rows, rows=rows())


def _open_hf(path: str, *, hub: bool) -> Source:
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

    source = Source(columns=list(ds.column_names), total=len(ds), rows=rows())
    # ClassLabel columns hold integers; import their names, which is what a user labels with.
    if label_feature is not None and hasattr(label_feature, "int2str"):
        source.rows = ({**r, "label": label_feature.int2str(r["label"])} for r in source.rows)
    return source


def open_source(path: str | Path, fmt: str) -> Source:
    """The rows of ``path`` read as ``fmt``; ``ImportFileError`` when it cannot be read at all."""
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


def columns_check(source: Source, path: str | Path, wanted: dict[str, str | None]) -> None:
    """Every named column (``{role: name}``) is in the file's header; else ``ImportFileError`` naming it."""
    if source.columns is None:
        return
    for role, name in wanted.items():
        if name and name not in source.columns:
            raise ImportFileError(
                f"{path}: {role} column {name!r} not found (columns: {', '.join(map(str, source.columns))})"
            )


def file_label_names(*, path: str | Path, fmt: str | None = None, label_col: str) -> list[str]:
    """The distinct non-empty values of ``label_col``, sorted: a project's label set for a new file."""
    fmt = fmt or detect_format(path)
    source = open_source(path, fmt)
    columns_check(source, path, {"label": label_col})
    names = {str(r[label_col]).strip() for r in source.rows if r.get(label_col) not in (None, "")}
    return sorted(n for n in names if n)
