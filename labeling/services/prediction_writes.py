"""Prediction rows: one scoring batch's columns written as a model version's predictions, idempotently.

The write half of scoring (``labeling.services.scoring`` computes the columns): an upsert on
(document, model_version), by one binary COPY into a staging table on PostgreSQL and by the ORM's
``bulk_create`` elsewhere; both give the same rows (``tests/labeling/services/test_scoring.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.db import connection, connections, transaction

from labeling.models import PREDICTION_SCORE_FIELDS, Document, Prediction, Split
from labeling.services.pgcopy import copy_binary

# Not attributions: they depend only on (model, text), so a re-scored row keeps them.
_UPDATE_FIELDS = ["in_queue", *PREDICTION_SCORE_FIELDS, "scored_at"]
# The columns a scoring batch writes, in the COPY's order.
_WRITE_FIELDS = ["document_id", "model_version_id", *_UPDATE_FIELDS]


@dataclass(frozen=True)
class PredictionColumns:
    """One scoring batch's predictions as columns, N documents (what ``predictions_write`` stores).

    ``predicted_label`` of document i is ``answers[answer_index[i]]``; ``in_queue`` is not a column: it
    is read from the document when the row is written.
    """

    document_id: np.ndarray  # (N,) int64
    probabilities: np.ndarray  # (N, C) float64, calibrated, in label_map order
    answers: list[str]  # the distinct predicted answers (stored texts)
    answer_index: np.ndarray  # (N,) int64 into answers
    confidence: np.ndarray  # (N,) float64, and the same for every column below
    entropy: np.ndarray
    expected_entropy: np.ndarray
    mutual_info: np.ndarray
    margin: np.ndarray
    acquisition_score: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray
    scored_at: datetime

    def __post_init__(self) -> None:
        for name in _FLOAT_COLUMNS:
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        object.__setattr__(self, "document_id", np.asarray(self.document_id, dtype=np.int64))
        object.__setattr__(self, "answer_index", np.asarray(self.answer_index, dtype=np.int64))
        object.__setattr__(self, "probabilities", np.asarray(self.probabilities, dtype=np.float64))

    def __len__(self) -> int:
        return len(self.document_id)


# The (N,) float columns, in the staging table's order after document_id, probabilities and answer_index.
_FLOAT_COLUMNS = (
    "confidence", "entropy", "expected_entropy", "mutual_info", "margin", "acquisition_score", "map_x", "map_y",
)


def predictions_write(*, model_version_id: int, columns: PredictionColumns, use_copy: bool | None = None) -> None:
    """Upsert ``columns`` as ``model_version_id``'s predictions on (document, model_version).

    ``in_queue`` is each document's state when the row is written (an unlabeled pool document).
    On PostgreSQL (``use_copy`` None) the columns go in one binary COPY (built by numpy, no Python
    per row) into a session-local staging table, and one ``INSERT ... SELECT ... ON CONFLICT DO
    UPDATE`` joined with the documents moves them: the statement the ORM's
    ``bulk_create(update_conflicts=True)`` sends, without a model instance and 14 bound parameters per
    row. Elsewhere (SQLite) it is that ``bulk_create``. The transaction commits without waiting for
    its WAL flush: a row lost in a crash is a document without a prediction, which the next scoring
    pass (or the beat's reconciliation) scores again.
    """
    if not len(columns):
        return
    if not (connection.vendor == "postgresql" if use_copy is None else use_copy):
        _predictions_write_orm(model_version_id, columns)
        return
    qn = connection.ops.quote_name
    table, documents = qn(Prediction._meta.db_table), qn(Document._meta.db_table)
    floats = ", ".join(qn(name) for name in _FLOAT_COLUMNS)
    columns_sql = ", ".join(qn(name) for name in _WRITE_FIELDS)
    updates = ", ".join(f"{qn(name)} = EXCLUDED.{qn(name)}" for name in _UPDATE_FIELDS)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT set_config('synchronous_commit', 'off', true)")
        # Temporary: one per database session, invisible to others; emptied at commit (and below,
        # for a caller whose transaction writes several batches).
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS prediction_columns_stage (document_id bigint,"
            " probabilities double precision[], answer_index bigint,"
            f" {', '.join(f'{qn(name)} double precision' for name in _FLOAT_COLUMNS)}) ON COMMIT DELETE ROWS"
        )
        payload = copy_binary(
            [columns.document_id, columns.probabilities, columns.answer_index,
             *(getattr(columns, name) for name in _FLOAT_COLUMNS)]
        )
        with cursor.cursor.copy(
            f"COPY prediction_columns_stage (document_id, probabilities, answer_index, {floats})"
            " FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.write(payload)
        values = {
            "document_id": "s.document_id",
            "model_version_id": "%(version)s",
            "in_queue": "NOT d.is_labeled AND d.split = %(pool)s",
            "probabilities": "to_jsonb(s.probabilities)",
            "predicted_label": "(%(answers)s::text[])[s.answer_index + 1]",
            "scored_at": "%(scored_at)s",
            **{name: f"s.{qn(name)}" for name in _FLOAT_COLUMNS},
        }
        cursor.execute(
            f"INSERT INTO {table} ({columns_sql}) SELECT {', '.join(values[name] for name in _WRITE_FIELDS)}"
            f" FROM prediction_columns_stage s JOIN {documents} d ON d.id = s.document_id"
            f" ON CONFLICT (document_id, model_version_id) DO UPDATE SET {updates}",
            {"version": model_version_id, "pool": Split.POOL, "answers": columns.answers,
             "scored_at": columns.scored_at},
        )
        cursor.execute("DELETE FROM prediction_columns_stage")


def _predictions_write_orm(model_version_id: int, columns: PredictionColumns) -> None:
    ids = columns.document_id.tolist()
    open_docs = set(
        Document.objects.filter(pk__in=ids, is_labeled=False, split=Split.POOL).values_list("pk", flat=True)
    )
    existing = set(Document.objects.filter(pk__in=ids).values_list("pk", flat=True))
    floats = {name: getattr(columns, name).tolist() for name in _FLOAT_COLUMNS}
    probabilities = columns.probabilities.tolist()
    Prediction.objects.bulk_create(
        [
            Prediction(
                document_id=doc_id,
                model_version_id=model_version_id,
                in_queue=doc_id in open_docs,
                probabilities=probabilities[i],
                predicted_label=columns.answers[int(columns.answer_index[i])],
                scored_at=columns.scored_at,
                **{name: values[i] for name, values in floats.items()},
            )
            for i, doc_id in enumerate(ids)
            if doc_id in existing  # as the COPY path's join: a document deleted meanwhile gets no row
        ],
        update_conflicts=True,
        unique_fields=["document", "model_version"],
        update_fields=_UPDATE_FIELDS,
    )


#: ``write(model_version_id=..., columns=...)``: how a scoring loop hands a batch's columns over.
PredictionWrite = Callable[..., None]


class PredictionWriter:
    """Writes scoring batches on a second database connection while the caller computes the next one.

    A re-score from the cache is CPU in this process (cache read, the head, the summaries) and then a
    write that is CPU in PostgreSQL's (the COPY, four indexes, two foreign keys per row); one after the
    other, each core idles half the time. ``write`` hands the batch to one writer thread and returns at
    once, after the previous batch is stored (so at most one batch is in flight and memory stays
    bounded); ``flush`` waits for it. A failed write raises in the caller at its next ``write`` or
    ``flush``; rows of a batch that never got written are documents without a prediction, which the
    next scoring pass (or the beat's reconciliation) scores again, as after a crash.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prediction-writer")
        self._pending: Future[None] | None = None

    def write(self, *, model_version_id: int, columns: PredictionColumns) -> None:
        self.flush()
        self._pending = self._pool.submit(predictions_write, model_version_id=model_version_id, columns=columns)

    def flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            # The thread's own connection (Django's are per thread), closed in that thread.
            self._pool.submit(connections.close_all).result()
            self._pool.shutdown()


@contextmanager
def prediction_writer() -> Iterator[tuple[PredictionWrite, Callable[[], None]]]:
    """(write, flush) for a scoring loop: a ``PredictionWriter`` on PostgreSQL outside a transaction;
    elsewhere ``predictions_write`` itself (and a no-op flush), since a second connection would not see
    the caller's uncommitted rows (a caller's ``atomic`` block, a test's transaction) and SQLite has one
    writer anyway. The writer is flushed and closed on the way out, also when the loop raised."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield predictions_write, lambda: None
        return
    writer = PredictionWriter()
    try:
        yield writer.write, writer.flush
    finally:
        writer.close()
