"""Queue reads: which unlabeled, unleased documents to offer next, best first.

The champion's ranking is one index scan: ``prediction_queue_open`` (model_version,
acquisition_score DESC, partial on ``in_queue``: labeled and holdout documents are not in it) joined
to documents by primary key, filtered again on ``is_labeled`` and split,
with an anti-join on the partial unique index of active assignments. The lease itself (row lock,
insert) is the service's job (``labeling.services.assignments``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from django.db.models import Exists, Max, Min, OuterRef, QuerySet, Subquery

from labeling.models import (
    Assignment,
    AssignmentState,
    Document,
    ModelStatus,
    ModelVersion,
    Prediction,
    Project,
    Split,
)
from modelsvc.acquisition import near_copy_order

CANDIDATES = 50
# A candidate closer than this share of the candidates' map extent to a leased item is a near-copy.
NEAR_COPY_SHARE = 0.02


@dataclass(frozen=True)
class Candidate:
    document_id: int
    score: float | None
    content_hash: str
    map_point: tuple[float, float] | None


def champion_for(project: Project) -> ModelVersion | None:
    return ModelVersion.objects.filter(project=project, status=ModelStatus.CHAMPION).first()


def _leased() -> Exists:
    return Exists(Assignment.objects.filter(document=OuterRef("document_id"), state=AssignmentState.ACTIVE))


def _skipped_by(annotator_id: int, ref: str) -> Exists:
    return Exists(
        Assignment.objects.filter(
            document=OuterRef(ref), annotator_id=annotator_id, state=AssignmentState.SKIPPED
        )
    )


def ranked_predictions(champion: ModelVersion, *, annotator_id: int) -> QuerySet[Prediction]:
    """Unlabeled, unleased pool documents the champion scored, highest acquisition score first."""
    return (
        Prediction.objects.filter(
            model_version=champion,
            in_queue=True,  # the partial index; the document filters below are the truth
            document__is_labeled=False,
            document__split=Split.POOL,
        )
        .filter(~_leased(), ~_skipped_by(annotator_id, "document_id"))
        .order_by("-acquisition_score")
    )


def pool_candidates(champion: ModelVersion, *, annotator_id: int, limit: int = CANDIDATES) -> list[Candidate]:
    rows = ranked_predictions(champion, annotator_id=annotator_id).values_list(
        "document_id", "acquisition_score", "document__content_hash", "map_x", "map_y"
    )[:limit]
    return [
        Candidate(doc_id, score, content_hash, (x, y) if x is not None and y is not None else None)
        for doc_id, score, content_hash, x, y in rows
    ]


def leased_points(project: Project, champion: ModelVersion) -> tuple[set[str], list[tuple[float, float]]]:
    """Content hashes and map points of the documents currently leased in this project (one query)."""
    point = Prediction.objects.filter(model_version=champion, document=OuterRef("document_id"))
    rows = (
        Assignment.objects.filter(document__project=project, state=AssignmentState.ACTIVE)
        .annotate(x=Subquery(point.values("map_x")[:1]), y=Subquery(point.values("map_y")[:1]))
        .values_list("document__content_hash", "x", "y")
    )
    hashes: set[str] = set()
    points: list[tuple[float, float]] = []
    for content_hash, x, y in rows:
        hashes.add(content_hash)
        if x is not None and y is not None:
            points.append((x, y))
    return hashes, points


def diversify(
    candidates: list[Candidate], leased_hashes: set[str], points: list[tuple[float, float]]
) -> list[Candidate]:
    """Batch diversity for a live queue: modelsvc's near-copy rule over the embedding map.

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
) -> list[int]:
    """Unlabeled, unleased document ids of ``split`` from a seeded random starting point (id order, wrapping).

    Used for holdout items (the order must not depend on the model) and for the cold start.
    """
    base = Document.objects.filter(project=project, split=split, is_labeled=False).filter(
        ~Exists(Assignment.objects.filter(document=OuterRef("pk"), state=AssignmentState.ACTIVE)),
        ~_skipped_by(annotator_id, "pk"),
    )
    bounds = Document.objects.filter(project=project).aggregate(first=Min("pk"), last=Max("pk"))
    first, last = bounds["first"], bounds["last"]
    if first is None or last is None:
        return []
    pivot = rng.randint(first, last)
    ids = list(base.filter(pk__gte=pivot).order_by("pk").values_list("pk", flat=True)[:limit])
    if len(ids) < limit:
        ids += list(base.filter(pk__lt=pivot).order_by("pk").values_list("pk", flat=True)[: limit - len(ids)])
    return ids


def queue_size(project: Project) -> int:
    """Documents still waiting for a label (pool and holdout), leased or not."""
    return Document.objects.filter(project=project, is_labeled=False).count()
