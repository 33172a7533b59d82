"""Reading labeled / unlabeled documents from CSV, JSONL or Parquet files."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


class DataError(ValueError):
    """The data file cannot be used; the message names the problem in one line."""


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV (.csv/.tsv), JSON Lines (.jsonl/.ndjson) or Parquet (.parquet/.pq) file."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file {p} does not exist")
    suffix = p.suffix.lower()
    if p.stat().st_size == 0:
        raise DataError(f"data file {p} is empty")
    try:
        if suffix in (".csv", ".tsv"):
            df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
        elif suffix in (".jsonl", ".ndjson"):
            df = pd.read_json(p, lines=True, dtype=False)
        elif suffix in (".parquet", ".pq"):
            df = pd.read_parquet(p)
        else:
            raise DataError(f"unsupported file type {suffix!r} for {p}; use .csv, .jsonl or .parquet")
    except DataError:
        raise
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"data file {p} is empty") from exc
    except Exception as exc:  # noqa: BLE001 - parser errors vary by format; report them in one line
        raise DataError(f"could not read {p}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    if len(df) == 0:
        raise DataError(f"data file {p} has no rows")
    return df


def column(df: pd.DataFrame, name: str, path: str | os.PathLike[str]) -> list[str]:
    if name not in df.columns:
        raise DataError(f"{path}: missing column {name!r} (columns: {', '.join(map(str, df.columns))})")
    values = df[name]
    if values.isna().any():
        raise DataError(f"{path}: column {name!r} has {int(values.isna().sum())} empty values")
    return [str(v) for v in values.tolist()]


def read_labeled(
    path: str | os.PathLike[str], text_col: str = "text", label_col: str = "label"
) -> tuple[list[str], list[str]]:
    """(texts, labels) from a labeled file; labels are read as strings."""
    df = read_table(path)
    return column(df, text_col, path), column(df, label_col, path)
