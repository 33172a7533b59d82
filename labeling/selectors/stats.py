"""Project statistics for the API and the dashboard: labels, queue, coverage, throughput, learning curve."""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

from django.db.models import Count, F, OuterRef, Subquery
from django.db.models.functions import TruncHour

from labeling.models import Annotation, Document, ModelStatus, ModelVersion, Prediction, Project
from labeling.selectors import poolcache, poolsample
from labeling.selectors.models import champion_get, model_figures
from modelsvc.calibration import MIN_N_TO_JUDGE, accuracy_interval


def label_counts(project: Project) -> dict[str, dict[str, int]]:
    """{split: {label: count}} over all annotations, every label of the set present (0 when unused).

    In a multi-label project a label's count is how many answers include it.
    """
    counts: dict[str, dict[str, int]] = {
        split: dict.fromkeys(project.label_space.names, 0) for split in ("pool", "holdout")
    }
    # The split by a probe per annotation (a correlated subquery), not a join: with the join PostgreSQL
    # merge-joined along the documents' primary key, 1,000,000 index entries for 3,000 labels (323 ms
    # against 22 ms, EXPLAIN ANALYZE at 1M documents, docs/BENCHMARKS.md): this read grows with the labels.
    split = Subquery(Document.objects.filter(pk=OuterRef("document_id")).values("split")[:1])
    rows = (
        Annotation.objects.filter(project=project)
        .annotate(split=split)
        .values("split", "label")
        .annotate(n=Count("id"))
    )
    space = project.label_space
    for row in rows:
        # A multi-label answer counts once for each label in its set (the empty set for none).
        bucket = counts.setdefault(row["split"], {})
        for name in space.as_names(row["label"]):
            bucket[name] = bucket.get(name, 0) + row["n"]
    return counts


def document_counts(project: Project) -> dict[str, dict[str, int]]:
    out = {split: {"total": 0, "labeled": 0} for split in ("pool", "holdout")}
    for row in Document.objects.filter(project=project).values("split", "is_labeled").annotate(n=Count("id")):
        bucket = out.setdefault(row["split"], {"total": 0, "labeled": 0})
        bucket["total"] += row["n"]
        if row["is_labeled"]:
            bucket["labeled"] += row["n"]
    return out


def champion_coverage(
    project: Project, champion: ModelVersion | None, *, pool_documents: int | None = None
) -> dict[str, Any]:
    """Pool documents the champion has scored; ``pool_documents`` when the caller has counted them."""
    pool = pool_documents
    if pool is None:
        pool = Document.objects.filter(project=project, split="pool").count()
    scored = (
        Prediction.objects.filter(model_version=champion, document__split="pool").count() if champion else 0
    )
    return {"pool_documents": pool, "scored_by_champion": scored, "share": (scored / pool) if pool else 0.0}


def annotator_throughput(project: Project) -> list[dict[str, Any]]:
    """Per annotator: labels, labels per active hour, median seconds per label."""
    rows = Annotation.objects.filter(project=project).values(
        "annotator_id", "annotator__username", "duration_ms", hour=TruncHour("created_at")
    )
    by_user: dict[int, dict[str, Any]] = defaultdict(lambda: {"labels": 0, "hours": set(), "durations": []})
    for row in rows:
        entry = by_user[row["annotator_id"]]
        entry["username"] = row["annotator__username"]
        entry["labels"] += 1
        entry["hours"].add(row["hour"])
        if row["duration_ms"] is not None:
            entry["durations"].append(row["duration_ms"])
    out = []
    for user_id, entry in sorted(by_user.items()):
        hours = max(len(entry["hours"]), 1)
        out.append(
            {
                "annotator_id": user_id,
                "username": entry["username"],
                "labels": entry["labels"],
                "labels_per_hour": entry["labels"] / hours,
                "median_duration_ms": statistics.median(entry["durations"]) if entry["durations"] else None,
            }
        )
    return out


def learning_curve(project: Project) -> list[dict[str, Any]]:
    """One point per evaluated model version: labels it was trained on -> holdout accuracy and macro-F1."""
    points = []
    for version in (
        ModelVersion.objects.filter(project=project).exclude(status=ModelStatus.TRAINING).order_by("version")
    ):
        metrics = version.metrics if isinstance(version.metrics, dict) else {}
        points.append(
            {
                "model_version": version.version,
                "status": version.status,
                "labels": version.train_label_count,
                "accuracy": metrics.get("accuracy"),
                "macro_f1": metrics.get("macro_f1"),
                "holdout_count": metrics.get("holdout_count"),
                "accuracy_interval": (figures := model_figures(metrics))["accuracy_interval"],
                "n": figures["n"],
                "too_small": figures["too_small"],
            }
        )
    return points


def _pool_wide(project: Project, champion: ModelVersion | None) -> dict[str, Any]:
    """The counts over every document (one grouped read) and the champion's coverage of the pool (from a
    page sample on a large project: ``coverage_sample``, poolsample.py)."""
    documents = document_counts(project)
    pool = documents["pool"]["total"]
    total = sum(split["total"] for split in documents.values())
    sample = poolsample.document_sample(project_id=project.pk, documents=total) if champion else None
    coverage, described = None, None
    if sample is not None and champion is not None:
        coverage, sampled = poolsample.sampled_coverage(sample, champion, pool)
        described = sample.describe(sampled) if sampled else None
    if described is None:  # exact: a small project, or a draw of no row
        coverage = champion_coverage(project, champion, pool_documents=pool)
    return {
        "documents": documents,
        # queue_size: documents waiting for a label, pool and holdout, leased or not
        "queue_size": sum(split["total"] - split["labeled"] for split in documents.values()),
        "coverage": coverage,
        "coverage_sample": described,
    }


def project_stats(project: Project) -> dict[str, Any]:
    champion = champion_get(project_id=project.pk)
    pool = poolcache.pool_figures(
        project_id=project.pk, champion_id=champion.pk if champion else None, name="stats",
        compute=lambda: _pool_wide(project, champion),
    )
    return {
        "project": project.pk,
        "documents": pool["documents"],
        "labels": label_counts(project),
        "queue_size": pool["queue_size"],
        "champion": champion.version if champion else None,
        "coverage": pool["coverage"],
        "coverage_sample": pool.get("coverage_sample"),
        "pool_figures_as_of": pool["as_of"],
        "annotators": annotator_throughput(project),
        "learning_curve": learning_curve(project),
        "agreement_with_model": (agreement := _agreement(project))["value"],
        "agreement_with_model_figures": agreement,
    }


def _agreement(project: Project) -> dict[str, Any]:
    """Share of labels that matched the champion's prediction at labeling time (value None before any
    model), with its 95 % Wilson interval, its n, and whether n is too small to judge."""
    rows = Annotation.objects.filter(project=project).exclude(predicted_label="")
    total = rows.count()
    matched = rows.filter(label=F("predicted_label")).count() if total else 0
    return {
        "value": matched / total if total else None,
        "interval": list(accuracy_interval(matched, total)) if total else None,
        "n": total,
        "min_n": MIN_N_TO_JUDGE,
        "too_small": total < MIN_N_TO_JUDGE,
    }
