"""The champion's pool figures from a page sample of a large project's documents (PostgreSQL).

The dashboard's uncertainty histogram, class balance, coverage and map read every prediction of the
champion: ~3 s at 1,000,000 scored documents (docs/BENCHMARKS.md), so ~30-40 s at 10M, every
``POOL_FIGURES_CACHE_SECONDS``. Once a project holds twice ``POOL_FIGURES_SAMPLE_DOCUMENTS`` documents
they are computed from one statement instead: a seeded ``TABLESAMPLE SYSTEM`` draw of about that many
of its documents, each joined to the champion's prediction by the unique (document, model version)
index (a ``LATERAL`` probe per sampled document: a plain join let PostgreSQL scan every champion
prediction to hash them, which is the cost the sample is there to save). Its cost is the sample's,
whatever the pool. Counts are scaled by the sampled share (a ratio estimator: the share is counted, not
assumed); the answer says the figures are estimates (``describe``). Document counts stay exact
(``stats.document_counts``). Pages, not rows, are drawn, so documents ingested side by side are drawn
together: an estimate's error is at least the binomial one (about 2/sqrt(n) of a bar of n sampled
documents at 95 %), larger where neighbouring documents are alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import connection

from labeling.models import Document, ModelVersion, Prediction, Split

#: The seed of the draw: a recomputation on an unchanged table draws the same pages.
SEED = 20261202


@dataclass(frozen=True)
class DocumentSample:
    """The draw: about ``percent`` % of ``project_id``'s ``documents`` (the same share of every page of the
    table is drawn, so other projects' rows on those pages count for nothing). How many were drawn is
    counted by the statement that reads them (``sampled`` below), not by one of its own."""

    project_id: int
    percent: float
    documents: int

    def query(
        self, select: str, tail: str = "", *, select_params: Sequence[Any] = (), tail_params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """``SELECT {select} FROM (the drawn documents: id, split, is_labeled) s {tail}``, with their
        parameters; ``{pred}`` in ``select`` or ``tail`` names the predictions table."""
        table = connection.ops.quote_name(Document._meta.db_table)
        pred = connection.ops.quote_name(Prediction._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {select.format(pred=pred)} FROM (SELECT id, split, is_labeled FROM {table} "
                f"TABLESAMPLE SYSTEM (%s) REPEATABLE ({SEED}) WHERE project_id = %s) s {tail.format(pred=pred)}",
                [*select_params, self.percent, self.project_id, *tail_params],
            )
            return cursor.fetchall()

    def estimate(self, count: int, sampled: int) -> int:
        """A count over ``sampled`` drawn documents scaled to the whole project (the ratio estimator)."""
        return round(count * self.documents / sampled)

    def describe(self, sampled: int) -> dict[str, Any]:
        return {
            "documents": sampled,
            "of": self.documents,
            "percent": round(self.percent, 4),
            "method": "TABLESAMPLE SYSTEM (pages), seeded",
            "counts": "estimated: count in the sample / sampled share of the project's documents",
        }


def document_sample(*, project_id: int, documents: int) -> DocumentSample | None:
    """The draw for about ``POOL_FIGURES_SAMPLE_DOCUMENTS`` of the project's ``documents``, or None where the
    figures stay exact: that setting 0, fewer than twice that many documents, or not PostgreSQL. (A draw that
    misses every page of the project reads no row; the callers then count the project whole.)"""
    target = int(settings.POOL_FIGURES_SAMPLE_DOCUMENTS)
    if target <= 0 or documents < 2 * target or connection.vendor != "postgresql":
        return None
    return DocumentSample(project_id, 100.0 * target / documents, documents)


@dataclass(frozen=True)
class SampledRows:
    """One row per sampled document; the prediction columns are NaN / None where the champion has none."""

    split: np.ndarray  # str
    labeled: np.ndarray  # bool
    scored: np.ndarray  # bool
    label: np.ndarray  # object: the predicted label or None
    mutual_info: np.ndarray
    entropy: np.ndarray
    map_x: np.ndarray
    map_y: np.ndarray
    document_id: np.ndarray

    @property
    def sampled(self) -> int:
        return len(self.document_id)


def sampled_rows(sample: DocumentSample, champion: ModelVersion) -> SampledRows:
    """The drawn documents with the champion's prediction of each: one statement."""
    rows = sample.query(
        "s.id, s.split, s.is_labeled, p.predicted_label, p.mutual_info, p.entropy, p.map_x, p.map_y",
        "LEFT JOIN LATERAL (SELECT predicted_label, mutual_info, entropy, map_x, map_y FROM {pred} "
        "WHERE document_id = s.id AND model_version_id = %s) p ON true ORDER BY s.id",
        tail_params=[champion.pk],
    )
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8

    def floats(values: tuple) -> np.ndarray:
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)

    labels = np.array(cols[3], dtype=object)
    return SampledRows(
        document_id=np.array(cols[0], dtype=np.int64), split=np.array(cols[1], dtype=object),
        labeled=np.array(cols[2], dtype=bool), scored=np.array([v is not None for v in cols[3]], dtype=bool),
        label=labels, mutual_info=floats(cols[4]), entropy=floats(cols[5]), map_x=floats(cols[6]),
        map_y=floats(cols[7]),
    )


def histogram(rows: SampledRows, sample: DocumentSample, bins: int) -> dict[str, Any]:
    """``dashboard.uncertainty_histogram`` from the sample: unlabeled pool documents the champion scored."""
    keep = rows.scored & (rows.split == Split.POOL) & ~rows.labeled
    metric = "mutual_info"
    values = rows.mutual_info[keep]
    if not values.size or not np.nanmax(values) > 0:
        metric, values = "entropy", rows.entropy[keep]
    hi = float(np.nanmax(values)) if values.size else 0.0
    if not hi > 0:
        return {"metric": metric, "bins": []}
    width = hi / bins
    counts = np.bincount(np.clip(np.floor(values / width), 0, bins - 1).astype(int), minlength=bins)
    return {
        "metric": metric,
        "bins": [
            {"lower": b * width, "upper": (b + 1) * width, "count": sample.estimate(int(counts[b]), rows.sampled)}
            for b in range(bins)
        ],
    }


def class_balance(rows: SampledRows, sample: DocumentSample) -> list[dict[str, Any]]:
    """``dashboard.class_balance`` from the sample: predicted labels, blind documents left out."""
    blind = (rows.split == Split.HOLDOUT) & ~rows.labeled
    counts = Counter(rows.label[rows.scored & ~blind].tolist())
    return [{"label": label, "count": sample.estimate(n, rows.sampled)} for label, n in counts.most_common()]


def coverage(rows: SampledRows, pool_documents: int) -> dict[str, Any]:
    """``stats.champion_coverage`` from the sample: the sampled pool's scored share of the exact pool count."""
    pool = rows.split == Split.POOL
    return _coverage(int(pool.sum()), int(rows.scored[pool].sum()), pool_documents)


def sampled_coverage(
    sample: DocumentSample, champion: ModelVersion, pool_documents: int
) -> tuple[dict[str, Any], int]:
    """(``coverage``, documents drawn) by counts, the rows left in the database (``/stats`` needs no more)."""
    [(sampled, in_pool, scored)] = sample.query(
        "count(*), count(*) FILTER (WHERE s.split = %s), count(*) FILTER (WHERE s.split = %s AND EXISTS ("
        "SELECT 1 FROM {pred} p WHERE p.document_id = s.id AND p.model_version_id = %s))",
        select_params=[Split.POOL, Split.POOL, champion.pk],
    )
    return _coverage(int(in_pool), int(scored), pool_documents), int(sampled)


def _coverage(sampled_pool: int, scored: int, pool_documents: int) -> dict[str, Any]:
    share = scored / sampled_pool if sampled_pool else 0.0
    return {"pool_documents": pool_documents, "scored_by_champion": round(share * pool_documents), "share": share}


def embedding_map(rows: SampledRows, max_points: int) -> list[dict[str, Any]]:
    """``dashboard.embedding_map`` from the sample: its mapped documents, evenly thinned to ``max_points``."""
    mapped = np.flatnonzero(rows.scored & ~np.isnan(rows.map_x) & ~np.isnan(rows.map_y))
    if mapped.size > max_points:
        mapped = mapped[:: int(np.ceil(mapped.size / max_points))]
    points = []
    for i in mapped[:max_points]:
        labeled, split = bool(rows.labeled[i]), str(rows.split[i])
        blind = split == Split.HOLDOUT and not labeled
        points.append({
            "doc": int(rows.document_id[i]), "x": float(rows.map_x[i]), "y": float(rows.map_y[i]),
            "label": None if blind else rows.label[i], "uncertainty": None if blind else float(rows.mutual_info[i]),
            "labeled": labeled, "split": split,
        })
    return points
