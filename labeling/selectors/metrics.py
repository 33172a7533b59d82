"""Reads behind the Prometheus gauges (labeling/api/metrics.py): per-project counts and queue depths.

A scrape must stay cheap at any size, so every figure comes from a fixed number of grouped queries
over all projects (never one query per project), each served by an index: documents by
``doc_project_split_labeled``, labels of the last hour by ``annotation_created``, the champion's
predictions by the ``prediction`` unique (document, model_version) index. Coverage means what the
dashboard means by it (``stats.champion_coverage``): pool documents the champion has scored over
pool documents. Nothing here reads a text, a name or a user: projects are ids.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.db.models import Count
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from labeling.models import Annotation, Document, ModelStatus, ModelVersion, Prediction, Split
from labeling.services.dispatch import known_queues

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ProjectFigures:
    project_id: int
    documents: int
    pool_documents: int
    labels: int
    labels_last_hour: int
    scored_by_champion: int
    champion_ece: float | None

    @property
    def coverage(self) -> float:
        """Share of pool documents the champion has scored (0 without pool documents)."""
        return self.scored_by_champion / self.pool_documents if self.pool_documents else 0.0


def project_figures() -> list[ProjectFigures]:
    """One row per project that has documents or a champion, in project id order: five queries in all."""
    documents: dict[int, int] = {}
    pool: dict[int, int] = {}
    for row in Document.objects.order_by().values("project_id", "split").annotate(n=Count("id")):
        documents[row["project_id"]] = documents.get(row["project_id"], 0) + row["n"]
        if row["split"] == Split.POOL:
            pool[row["project_id"]] = row["n"]
    labels = _by_project(Annotation.objects.order_by().values("document__project_id").annotate(n=Count("id")))
    since = timezone.now() - timedelta(hours=1)
    recent = _by_project(
        Annotation.objects.filter(created_at__gte=since).order_by().values("document__project_id").annotate(n=Count("id"))
    )
    champions = ModelVersion.objects.filter(status=ModelStatus.CHAMPION).values_list(
        "project_id", KeyTextTransform("ece", "metrics")
    )
    ece = {project_id: _ece(value) for project_id, value in champions}
    scored = {
        row["model_version__project_id"]: row["n"]
        for row in Prediction.objects.filter(model_version__status=ModelStatus.CHAMPION, document__split=Split.POOL)
        .order_by()
        .values("model_version__project_id")
        .annotate(n=Count("id"))
    }
    return [
        ProjectFigures(
            project_id=project_id,
            documents=documents.get(project_id, 0),
            pool_documents=pool.get(project_id, 0),
            labels=labels.get(project_id, 0),
            labels_last_hour=recent.get(project_id, 0),
            scored_by_champion=scored.get(project_id, 0),
            champion_ece=ece.get(project_id),
        )
        for project_id in sorted(documents.keys() | ece.keys())
    ]


def _by_project(rows: object) -> dict[int, int]:
    return {row["document__project_id"]: row["n"] for row in rows}  # type: ignore[attr-defined]


def _ece(value: str | None) -> float | None:
    """The champion's stored ECE (JSON text from the key transform); None when absent or malformed."""
    try:
        number = float(value) if value is not None else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def queue_depths() -> dict[str, int | None]:
    """Messages waiting in each queue the task registry routes to (not those a worker holds).

    Through kombu's queue declaration, which answers the queue's size: LLEN on Redis, a count of the
    queue's message files on the demo's filesystem broker. None for every queue when the broker does
    not answer: the depth is unknown then, not zero.
    """
    names = known_queues()
    try:
        with current_app.connection_for_read() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_S)
            channel = conn.default_channel
            return {name: int(channel.queue_declare(queue=name).message_count) for name in names}
    except Exception:  # any transport error: the scrape goes on without depths; details to the log
        logger.warning("metrics: the broker does not answer", exc_info=True)
        return dict.fromkeys(names)
