"""Queue reads: which unlabeled, unleased documents to offer next, best first.

The hot path (``queue/next``) is a handful of raw statements, portable between PostgreSQL and SQLite,
because on this service's hardware each ORM statement costs ~0.75 ms of Python against a 0.07 ms
round trip (docs/BENCHMARKS.md):

- ``lease_context``: the caller's lease count and active lease, the number of live leases in the
  project, the champion and the ranking's first window (below), in one statement;
- ``pool_candidates``: the champion's ranking, read as the first rows of the partial index
  ``prediction_queue_open`` (model_version, acquisition_score DESC, only ``in_queue`` rows: labeled
  and holdout documents are not in it) inside a ``LIMIT`` subquery, which the planner cannot flatten.
  The plan is therefore the same whatever the table statistics say: with statistics from before a
  100,000-document import the flattened query walked every pool document (250 ms instead of 1 ms).
  The document filters (``is_labeled``, split), the free places (``labels_required`` against live
  leases and labels) and the anti-join on the caller's own leases and skips are applied to those
  rows; when they remove too many, the window widens.
- ``cold_start_ranked``: before the first model, the stored pre-model order (services/coldstart.py);
- ``random_unleased``: holdout items, and pool items nothing ranks, from a seeded pivot, one statement.

Each row carries what the response shows (document text, the champion's prediction), so a lease
needs no further read. The lease itself (row lock, insert) is the service's job
(``labeling.services.assignments``).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from labeling.models import (
    PREDICTION_SCORE_FIELDS,
    Assignment,
    AssignmentState,
    Document,
    ModelStatus,
    ModelVersion,
    Prediction,
    Project,
    Split,
)
from labeling.selectors import poolcache
from modelsvc.acquisition import POWER_FLOOR, near_copy_order

CANDIDATES = 50
# The ranking window read from the index per try: the candidates plus room for leased and skipped rows.
WINDOW = 4 * CANDIDATES
# A candidate closer than this share of the candidates' map extent to a leased item is a near-copy.
NEAR_COPY_SHARE = 0.02

DOC = Document._meta.db_table
ASSIGNMENT = Assignment._meta.db_table
PREDICTION = Prediction._meta.db_table
MODEL = ModelVersion._meta.db_table
PROJECT = Project._meta.db_table

# Document columns a queue response shows (and that identify a copy), in the model's field order
# (``Model.from_db`` with some fields deferred takes the values in that order).
_DOC_COLUMNS = (
    "id", "project_id", "external_id", "text", "content_hash", "metadata", "split",
    "suggested_label", "suggested_score", "is_labeled",
)
_PREDICTION_COLUMNS = ("document_id", "model_version_id", *PREDICTION_SCORE_FIELDS)


@dataclass(frozen=True)
class Candidate:
    document_id: int
    score: float | None
    content_hash: str
    map_point: tuple[float, float] | None
    # The document and prediction columns as read with the ranking; ``offer`` turns them into models
    # for the one candidate that gets leased (building 50 pairs of models would cost more than the query).
    row: tuple[Any, ...] = ()


@dataclass(frozen=True)
class LeaseContext:
    lease_count: int  # the caller's leases in this project, any state (seeds the holdout draw)
    active_id: int | None  # the caller's live lease in this project
    live_leases: int  # live leases in this project, anyone's
    champion: ModelVersion | None  # id, version and label_map only
    # The champion's first ranking window, read in the same statement (``pool_candidates``'s rows).
    ranking: list[tuple[Any, ...]] = field(default_factory=list)


def _fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _json(model: type[Any], field: str, value: Any) -> Any:
    return model._meta.get_field(field).from_db_value(value, None, connection)


def _document(values: Sequence[Any]) -> Document:
    row = dict(zip(_DOC_COLUMNS, values, strict=True))
    row["metadata"] = _json(Document, "metadata", row["metadata"])
    row["is_labeled"] = bool(row["is_labeled"])
    return Document.from_db(connection.alias, list(row), list(row.values()))


def _prediction(values: Sequence[Any], champion: ModelVersion) -> Prediction:
    row = dict(zip(_PREDICTION_COLUMNS, values, strict=True))
    row["probabilities"] = _json(Prediction, "probabilities", row["probabilities"])
    prediction = Prediction.from_db(connection.alias, list(row), list(row.values()))
    prediction.model_version = champion
    return prediction


# Places a document holds (a live lease or a label each), and the caller's own history with it.
_HOLDS = (AssignmentState.ACTIVE.value, AssignmentState.DONE.value)
_SEEN = (AssignmentState.ACTIVE.value, AssignmentState.DONE.value, AssignmentState.SKIPPED.value)


def _open_places(document: str) -> str:
    """SQL: the document (column ``document``) has a free place, and the caller never held or skipped it.

    The caller sees a document once: not again after labeling or skipping it (a release, an expiry
    gives it back to everyone, the caller included). Without overlap a document has one place, so
    the first clause is "nobody holds it", as before.
    """
    holds = ", ".join(["%s"] * len(_HOLDS))
    seen = ", ".join(["%s"] * len(_SEEN))
    return (
        f"(SELECT COUNT(*) FROM {ASSIGNMENT} a WHERE a.document_id = {document} AND a.state IN ({holds}))"
        " < d.labels_required"
        f" AND NOT EXISTS (SELECT 1 FROM {ASSIGNMENT} s WHERE s.document_id = {document}"
        f" AND s.annotator_id = %s AND s.state IN ({seen}))"
    )


def _open_places_params(annotator_id: int) -> list[Any]:
    return [*_HOLDS, annotator_id, *_SEEN]


def _ranking_sql(champion: str) -> str:
    """SQL: the first rows of ``champion``'s open ranking (an id or a subquery), filtered as ``pool_candidates``
    says; parameters ``_ranking_params``."""
    doc_cols = ", ".join(f"d.{c}" for c in _DOC_COLUMNS)
    pred_cols = ", ".join(f"p.{c}" for c in _PREDICTION_COLUMNS)
    return (
        f"SELECT {doc_cols}, {pred_cols} FROM ("
        f"SELECT {', '.join(_PREDICTION_COLUMNS)} FROM {PREDICTION}"
        f" WHERE model_version_id = {champion} AND in_queue ORDER BY acquisition_score DESC LIMIT %s"
        f") p JOIN {DOC} d ON d.id = p.document_id"
        " WHERE NOT d.is_labeled AND d.split = %s"
        f" AND {_open_places('p.document_id')}"
        " ORDER BY p.acquisition_score DESC LIMIT %s"
    )


def _ranking_params(annotator_id: int, window: int, limit: int) -> list[Any]:
    return [window, Split.POOL.value, *_open_places_params(annotator_id), limit]


def lease_context(*, project_id: int, annotator_id: int) -> LeaseContext:
    """Everything ``lease_next`` decides on, and the first ranking window, in one statement (run after
    expiring lapsed leases).

    The ranking is read before the caller's live lease and the holdout draw are known: most requests
    lease from it, and a round trip costs more under load than reading 200 index rows that a request
    returning its live lease or serving a holdout item then does not use.
    """
    active = AssignmentState.ACTIVE.value
    champion = f"(SELECT id FROM {MODEL} WHERE project_id = %s AND status = %s)"
    sql = (
        f"SELECT (SELECT COUNT(*) FROM {ASSIGNMENT} WHERE project_id = %s AND annotator_id = %s),"
        f" (SELECT MAX(id) FROM {ASSIGNMENT} WHERE project_id = %s AND annotator_id = %s AND state = %s),"
        f" (SELECT COUNT(*) FROM {ASSIGNMENT} WHERE project_id = %s AND state = %s),"
        " m.id, m.version, m.label_map, r.*"
        f" FROM (SELECT 1 AS one) o LEFT JOIN {MODEL} m ON m.project_id = %s AND m.status = %s"
        f" LEFT JOIN ({_ranking_sql(champion)}) r ON 1 = 1"
    )
    params = [project_id, annotator_id, project_id, annotator_id, active, project_id, active]
    params += [project_id, ModelStatus.CHAMPION.value]
    params += [project_id, ModelStatus.CHAMPION.value, *_ranking_params(annotator_id, WINDOW, CANDIDATES)]
    rows = _fetch(sql, params)
    count, active_id, live, model_id, version, label_map = rows[0][:6]
    champion_model = None
    if model_id is not None:
        fields = ["id", "project_id", "version", "status", "label_map"]
        label_names = _json(ModelVersion, "label_map", label_map)
        values = [model_id, project_id, version, ModelStatus.CHAMPION.value, label_names]
        champion_model = ModelVersion.from_db(connection.alias, fields, values)
    # Ordered here, not by an outer ORDER BY: the window is already in index order per branch, and (when
    # the lease set ``enable_sort`` off) that sort's penalty sent the statement past ``jit_above_cost``:
    # 1.3 s of compiling (EXPLAIN ANALYZE, 100,000 documents).
    score = len(_DOC_COLUMNS) + _PREDICTION_COLUMNS.index("acquisition_score")
    ranking = sorted(  # PostgreSQL's DESC puts NULL first
        (row[6:] for row in rows if row[6] is not None), key=lambda r: (r[score] is None, r[score] or 0.0), reverse=True
    )
    return LeaseContext(
        lease_count=count, active_id=active_id, live_leases=live, champion=champion_model, ranking=ranking
    )


def pool_candidates(
    champion: ModelVersion,
    *,
    annotator_id: int,
    limit: int = CANDIDATES,
    first_window: list[tuple[Any, ...]] | None = None,
) -> list[Candidate]:
    """Unlabeled, unleased, unskipped pool documents the champion scored, highest acquisition score first.

    ``first_window``: the rows of the first ``WINDOW`` ranking rows, already read (``lease_context``).
    """
    sql = _ranking_sql("%s")
    window = max(WINDOW, limit)
    rows = first_window if first_window is not None and limit == CANDIDATES else None
    while True:
        if rows is None:
            rows = _fetch(sql, [champion.pk, *_ranking_params(annotator_id, window, limit)])
        if len(rows) == limit or not _more_ranked(champion.pk, window):
            break
        window *= 8  # many of the top rows were leased, skipped or closed: read further down the index
        rows = None
    n = len(_DOC_COLUMNS)
    at = {name: n + i for i, name in enumerate(_PREDICTION_COLUMNS)}
    out = []
    for row in rows:
        x, y = row[at["map_x"]], row[at["map_y"]]
        point = (x, y) if x is not None and y is not None else None
        out.append(Candidate(row[0], row[at["acquisition_score"]], row[_DOC_COLUMNS.index("content_hash")], point, row))
    return out


def offer(candidate: Candidate, champion: ModelVersion) -> tuple[Document, Prediction]:
    """The candidate's document and the champion's prediction of it, as models (nothing is read)."""
    n = len(_DOC_COLUMNS)
    return _document(candidate.row[:n]), _prediction(candidate.row[n:], champion)


def _more_ranked(champion_id: int, window: int) -> bool:
    """Whether the champion's open ranking has more than ``window`` rows."""
    sql = (
        f"SELECT 1 FROM {PREDICTION} WHERE model_version_id = %s AND in_queue"
        " ORDER BY acquisition_score DESC LIMIT 1 OFFSET %s"
    )
    return bool(_fetch(sql, [champion_id, window]))


@dataclass(frozen=True)
class Draw:
    """The pool a stochastic strategy's lease is drawn from: its size and the sum of its sampling weights.

    ``as_of`` is None where both were counted for this lease; on a large project it is when the cached
    figures were counted.
    """

    pool_size: int
    normaliser: float
    as_of: str | None = None

    def describe(self) -> dict[str, Any]:
        """What a lease's ``reason`` records of the draw beyond its normaliser (nothing when counted for it)."""
        return {} if self.as_of is None else {"normaliser_as_of": self.as_of}


def _draw_weight(power: float) -> str:
    """The SQL of one prediction's sampling weight ``(mutual_info + floor) ** power`` (``power_weights``)."""
    base = f"(CASE WHEN mutual_info > 0 THEN mutual_info ELSE 0 END + {float(POWER_FLOOR)!r})"
    return base if power == 1.0 else f"POWER({base}, {float(power)!r})"


def _draw_counted(champion: ModelVersion, power: float) -> Draw:
    sql = f"SELECT COUNT(*), SUM({_draw_weight(power)}) FROM {PREDICTION} WHERE model_version_id = %s AND in_queue"
    [(count, total)] = _fetch(sql, [champion.pk])
    return Draw(pool_size=int(count), normaliser=float(total or 0.0))


def stochastic_draw(champion: ModelVersion, *, power: float) -> Draw:
    """The champion's open ranking as a draw proportional to ``(mutual_info + floor) ** power``.

    The same weights as ``modelsvc.acquisition.power_weights``; every ``in_queue`` row counts, also rows
    leased to others at this moment (a batch's worth against the whole pool). Counted per lease (one
    statement over the open ranking's partial index) below ``POOL_FIGURES_EXACT_MAX_DOCUMENTS`` documents,
    as the pool figures are; at or above it, where that statement is linear in the open pool (70 ms at
    650,000 open predictions, 211 ms at 1.95M: docs/BENCHMARKS.md), at most once per
    ``POOL_FIGURES_CACHE_SECONDS`` per champion and power, and the lease records the count's age. The
    probability only weighs labels in the temperature fit (``calibration.importance_weights``: 1 / (N q),
    normalised to mean 1), where a scale common to all leases cancels; a count up to a period old changes
    the weights' ratio between leases of different periods by the share of the pool labeled in a period.
    """
    if not poolcache.is_large(champion.project_id):
        return _draw_counted(champion, power)
    key = f"alabel:stochastic-draw:{champion.project_id}:{champion.pk}:{float(power)!r}"
    draw = cache.get(key)
    if draw is None:
        draw = dataclasses.replace(_draw_counted(champion, power), as_of=timezone.now().isoformat())
        cache.set(key, draw, timeout=settings.POOL_FIGURES_CACHE_SECONDS)
    return draw


def candidate_base_score(candidate: Candidate) -> float:
    """The BALD (``mutual_info``) a stochastic strategy's draw weighted this candidate by."""
    return float(candidate.row[len(_DOC_COLUMNS) + _PREDICTION_COLUMNS.index("mutual_info")])


#: ``Assignment.reason["strategy"]`` of pool leases drawn from the seeded random order: by the project's
#: ``random_share`` once a model exists, and the random cold start (no model yet, or documents it has not scored).
RANDOM_SHARE = "random_share"
COLD_START_RANDOM = "cold_start_random"


def random_draws(*, document_ids: Sequence[int]) -> set[int]:
    """Of ``document_ids``, those a labeled random-share lease drew from the pool's random order.

    The random cold start's labels are random draws too, but adding them to the temperature fit did not
    pass its adoption rule (docs/REPLAY.md, "A random share of the pool in the temperature fit"), so a
    project without a random share calibrates exactly as before.
    """
    rows = Assignment.objects.filter(
        document_id__in=list(document_ids), state=AssignmentState.DONE, reason__strategy=RANDOM_SHARE
    )
    return set(rows.values_list("document_id", flat=True))


def selection_draws(*, document_ids: Sequence[int]) -> dict[int, tuple[float, int]]:
    """(selection probability, pool size) of the labeled lease of each document a stochastic draw served.

    With overlap a document has several labeled leases; its first draw is the one that chose it.
    """
    rows = (
        Assignment.objects.filter(
            document_id__in=list(document_ids), state=AssignmentState.DONE, selection_probability__isnull=False
        )
        .order_by("document_id", "id")
        .values_list("document_id", "selection_probability", "selection_pool_size")
    )
    out: dict[int, tuple[float, int]] = {}
    for doc_id, probability, pool_size in rows:
        out.setdefault(doc_id, (probability, pool_size))
    return out


def leased_points(project: Project, champion: ModelVersion) -> tuple[set[str], list[tuple[float, float]]]:
    """Content hashes and map points of the documents currently leased in this project (one query).

    Documents with overlap are left out: they are meant to be leased to several annotators at once,
    so a lease of one must not push the document itself to the back for its next annotator.
    """
    sql = (
        f"SELECT d.content_hash, p.map_x, p.map_y FROM {ASSIGNMENT} a JOIN {DOC} d ON d.id = a.document_id"
        f" LEFT JOIN {PREDICTION} p ON p.document_id = a.document_id AND p.model_version_id = %s"
        " WHERE a.project_id = %s AND a.state = %s AND d.labels_required = 1"
    )
    hashes: set[str] = set()
    points: list[tuple[float, float]] = []
    for content_hash, x, y in _fetch(sql, [champion.pk, project.pk, AssignmentState.ACTIVE.value]):
        hashes.add(content_hash)
        if x is not None and y is not None:
            points.append((x, y))
    return hashes, points


def diversify(
    candidates: list[Candidate], leased_hashes: set[str], points: list[tuple[float, float]]
) -> list[Candidate]:
    """The batch rule of a batch-aware strategy (``diverse``): modelsvc's near-copy rule on the map.

    Exact copies (same content hash) and map neighbours of documents leased to others go to the
    back; the order among the kept candidates stays the acquisition order.
    """
    if not candidates:
        return []
    xy = np.array([c.map_point if c.map_point else (np.nan, np.nan) for c in candidates], dtype=np.float64)
    duplicate = np.array([c.content_hash in leased_hashes for c in candidates])
    held = np.array(points, dtype=np.float64).reshape(-1, 2)
    order = near_copy_order(xy, held, duplicate=duplicate, share=NEAR_COPY_SHARE)
    return [candidates[i] for i in order]


def random_unleased(
    project: Project, *, split: str, annotator_id: int, rng: random.Random, limit: int = 5
) -> list[Document]:
    """Unlabeled, unleased documents of ``split`` from a seeded random starting point (id order, wrapping).

    Used for holdout items (the order must not depend on the model) and for the cold start. The
    pivot is a seeded fraction of the project's id range, resolved in the same statement. Documents
    with overlap that another annotator has started come first: a random pick from a large holdout
    would almost never return to them, leaving the holdout full of half-labeled documents that neither
    the gate nor the agreement figures can use (the label-noise replay found 5 of ~100 complete).
    """
    cols = ", ".join(f"d.{c}" for c in _DOC_COLUMNS)
    free = (
        f"SELECT {cols} FROM {DOC} d WHERE d.project_id = %s AND d.split = %s AND NOT d.is_labeled"
        f" AND {_open_places('d.id')}"
    )
    base = [project.pk, split, *_open_places_params(annotator_id)]
    holds = ", ".join(["%s"] * len(_HOLDS))
    held = f"EXISTS (SELECT 1 FROM {ASSIGNMENT} h WHERE h.document_id = d.id AND h.state IN ({holds}))"
    rows: list[Any] = []
    if project.overlap > 1:  # without overlap no free document is held by anyone: nothing to finish
        rows = _fetch(f"{free} AND d.labels_required > 1 AND {held} ORDER BY d.id LIMIT %s", [*base, *_HOLDS, limit])
    fresh = f"{free} AND NOT {held}" if rows else free
    fresh_params = [*base, *_HOLDS] if rows else base
    pivot = f"(SELECT MIN(id) + CAST((MAX(id) - MIN(id) + 1) * %s AS BIGINT) FROM {DOC} WHERE project_id = %s)"
    fraction = rng.random()
    for side in (">=", "<"):
        if len(rows) < limit:
            rows += _fetch(
                f"{fresh} AND d.id {side} {pivot} ORDER BY d.id LIMIT %s",
                [*fresh_params, fraction, project.pk, limit - len(rows)],
            )
    return [_document(row) for row in rows]


@dataclass(frozen=True)
class Ranked:
    document: Document
    rank: int
    strategy: str  # the order's name for the lease reason, as stored with it (``Project.cold_start``)


def cold_start_ranked(project: Project, *, annotator_id: int, limit: int = 5) -> list[Ranked]:
    """Free pool documents of the pre-model order (``Document.cold_start_rank``), lowest rank first.

    Same rules as every queue read: unlabeled, a free place, never held or skipped by the caller. The
    partial index ``doc_cold_start_open`` holds only ranked, unlabeled documents (a few hundred).
    """
    cols = ", ".join(f"d.{c}" for c in _DOC_COLUMNS)
    sql = (
        f"SELECT {cols}, d.cold_start_rank, p.cold_start FROM {DOC} d JOIN {PROJECT} p ON p.id = d.project_id"
        " WHERE d.project_id = %s AND d.cold_start_rank IS NOT NULL AND NOT d.is_labeled AND d.split = %s"
        f" AND {_open_places('d.id')} ORDER BY d.cold_start_rank LIMIT %s"
    )
    rows = _fetch(sql, [project.pk, Split.POOL.value, *_open_places_params(annotator_id), limit])
    n = len(_DOC_COLUMNS)
    out = []
    for row in rows:
        info = _json(Project, "cold_start", row[n + 1]) or {}
        out.append(Ranked(_document(row[:n]), row[n], str(info.get("strategy", "cold_start"))))
    return out


def queue_size(project: Project) -> int:
    """Documents still waiting for a label (pool and holdout), leased or not."""
    return Document.objects.filter(project=project, is_labeled=False).count()
