"""PostgreSQL's binary COPY stream built from numpy columns: one array operation per column, none per row.

psycopg's ``Copy.write_row`` adapts every value of every row in turn; for a scoring batch of thousands of
rows of numbers that was a visible share of a re-score (docs/BENCHMARKS.md). The binary format is a
header, then per row a field count and each field as a length and its big-endian bytes, then a trailer
(https://www.postgresql.org/docs/current/sql-copy.html, "Binary Format"): with fixed-width fields every row
has the same layout, so a numpy structured array of N records is the whole body.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)  # signature, flags, header extension length
_TRAILER = struct.pack("!h", -1)
_FLOAT8_OID = 701


def copy_binary(columns: Sequence[np.ndarray]) -> bytes:
    """The binary COPY data of N rows with one field per column, in the given order.

    A column is (N,) int64 -> bigint, (N,) int32 -> integer, (N,) float64 -> double precision, or
    (N, C) float64 -> a one-dimensional double precision[] of C elements. No NULLs; other dtypes are
    refused (ValueError), so a column never reaches PostgreSQL in a type it does not expect.
    """
    arrays = [np.asarray(c) for c in columns]
    n = len(arrays[0]) if arrays else 0
    fields: list[tuple[Any, ...]] = [("count", ">i2")]  # (name, type[, shape]): numpy's structured dtype
    for j, a in enumerate(arrays):
        if len(a) != n:
            raise ValueError(f"column {j} has {len(a)} rows, column 0 has {n}")
        if a.ndim == 1 and a.dtype.kind in "iu" and a.dtype.itemsize in (4, 8):
            fields += [(f"len{j}", ">i4"), (f"v{j}", f">i{a.dtype.itemsize}")]
        elif a.ndim == 1 and a.dtype == np.float64:
            fields += [(f"len{j}", ">i4"), (f"v{j}", ">f8")]
        elif a.ndim == 2 and a.dtype == np.float64:
            element = np.dtype([("len", ">i4"), ("v", ">f8")])
            # ndim, has-nulls flag, element type, then per dimension its size and lower bound
            fields += [(f"len{j}", ">i4"), (f"head{j}", ">i4", (5,)), (f"v{j}", element, (a.shape[1],))]
        else:
            raise ValueError(f"column {j}: no binary COPY form for {a.dtype} with shape {a.shape}")
    rows = np.empty(n, dtype=np.dtype(fields))  # packed: exactly the wire layout
    rows["count"] = len(arrays)
    for j, a in enumerate(arrays):
        if a.ndim == 2:
            width = a.shape[1]
            rows[f"len{j}"] = 20 + 12 * width
            rows[f"head{j}"] = (1, 0, _FLOAT8_OID, width, 1)
            rows[f"v{j}"]["len"] = 8
            rows[f"v{j}"]["v"] = a
        else:
            rows[f"len{j}"] = a.dtype.itemsize
            rows[f"v{j}"] = a
    return _HEADER + rows.tobytes() + _TRAILER
