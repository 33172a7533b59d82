"""Reads behind the Prometheus gauges (labeling/api/metrics.py): per-project counts and queue depths.

A scrape must stay cheap at any size, so every figure comes from a fixed number of grouped queries
over all projects (never one query per project), each an index count without joining the documents:
documents by ``doc_project_split_labeled`` (index-only), labels of the last hour by
``annotation_created``, the champions' predictions by the predictions' model-version index.
Coverage is the reconciliation's measure (``models.champion_has_gaps``): the champion scores every
document of its project, pool and holdout, so scored documents / documents is the share scored;
the dashboard's pool-only share needs a join of predictions with documents (seconds at a million
documents) and differs from it only while the holdout is scored at another pace than the pool.
Nothing here reads a text, a name or a user: projects are ids.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.db.models.fields.json import KeyTextTransform
from django.utils import timezone

from labeling.models import Annotation, Document, ModelStatus, ModelVersion, Prediction
from labeling.services.dispatch import known_queues

logger = logging.getLogger(__name__)

BROKER_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class ProjectFigures:
    project_id: int
    documents: int
    labels: int
    labels_last_hour: int
    scored_by_champion: int
    champion_ece: float | None

    @property
    def coverage(self) -> float:
        """Share of the project's documents the champion has scored (0 without documents)."""
        return min(1.0, self.scored_by_champion / self.documents) if self.documents else 0.0


def project_figures() -> list[ProjectFigures]:
    """One row per project that has documents or a champion, in project id order: five queries in all.

    They are index counts, linear in the rows counted, so on PostgreSQL they run under their own
    statement timeout (METRICS_STATEMENT_TIMEOUT_MS) instead of the web's 5 s: the caller computes
    them once per cache period, not per request.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL statement_timeout = %s", [int(settings.METRICS_STATEMENT_TIMEOUT_MS)])
        return _figures()


def _figures() -> list[ProjectFigures]:
    documents = {
        row["project_id"]: row["n"]
        for row in Document.objects.order_by().values("project_id").annotate(n=Count("id"))
    }
    labels = _by_project(Annotation.objects.order_by().values("project_id").annotate(n=Count("id")))
    since = timezone.now() - timedelta(hours=1)
    recent = _by_project(
        Annotation.objects.filter(created_at__gte=since).order_by().values("project_id").annotate(n=Count("id"))
    )
    champions = ModelVersion.objects.filter(status=ModelStatus.CHAMPION).values_list(
        "project_id", KeyTextTransform("ece", "metrics")
    )
    ece = {project_id: _ece(value) for project_id, value in champions}
    scored = {
        row["model_version__project_id"]: row["n"]
        for row in Prediction.objects.filter(model_version__status=ModelStatus.CHAMPION)
        .order_by()
        .values("model_version__project_id")
        .annotate(n=Count("id"))
    }
    return [
        ProjectFigures(
            project_id=project_id,
            documents=documents.get(project_id, 0),
            labels=labels.get(project_id, 0),
            labels_last_hour=recent.get(project_id, 0),
            scored_by_champion=scored.get(project_id, 0),
            champion_ece=ece.get(project_id),
        )
        for project_id in sorted(documents.keys() | ece.keys())
    ]


def _by_project(rows: object) -> dict[int, int]:
    return {row["project_id"]: row["n"] for row in rows}  # type: ignore[attr-defined]


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
