"""Reads behind the labeling page's progress strip and the project dashboard.

Every function returns plain JSON-ready data. ModelVersion.metrics is written by the workers and
may be partial (a failed evaluation, an old version), so metrics are read defensively: a missing
figure is ``None``, never an exception.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.db.models import Count, Max, Min, Q, QuerySet
from django.db.models.functions import Mod, TruncHour
from django.utils import timezone

from labeling import roles
from labeling.models import (
    Annotation,
    Assignment,
    AssignmentState,
    ModelVersion,
    Prediction,
    Project,
    RunStatus,
    Split,
    TrainingRun,
)
from labeling.selectors import poolcache, poolsample, stats
from labeling.selectors.agreement import annotator_quality, project_agreement
from labeling.selectors.flags import flag_counts
from labeling.selectors.models import champion_get, model_figures
from labeling.selectors.multilabel import multi_label_summary
from labeling.selectors.review import review_summary

MAP_MAX_POINTS = 3000
HISTOGRAM_BINS = 20
RECENT_RUNS = 20


# Bootstrap resamples for the dashboard's intervals (the API's default is 1,000; figures are cached).
DASHBOARD_BOOT = 300


def metric(metrics: Any, key: str) -> Any:
    """A figure from ModelVersion.metrics; None when absent."""
    return metrics.get(key) if isinstance(metrics, dict) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _bins(value: Any) -> list[dict[str, float]]:
    """Reliability bins as [{lower, upper, count, confidence, accuracy}], dropping malformed ones."""
    if not isinstance(value, list):
        return []
    keys = ("lower", "upper", "count", "confidence", "accuracy")
    out = []
    for item in value:
        if isinstance(item, dict) and all(_number(item.get(k)) is not None for k in keys):
            out.append({k: float(item[k]) for k in keys})
    return out


def model_summary(version: ModelVersion | None) -> dict[str, Any] | None:
    if version is None:
        return None
    return {
        "id": version.pk,
        "version": version.version,
        "status": version.status,
        "label_count": version.train_label_count,
        "trained_at": version.created_at.isoformat(),
        "promoted_at": version.promoted_at.isoformat() if version.promoted_at else None,
        "accuracy": _number(metric(version.metrics, "accuracy")),
        "macro_f1": _number(metric(version.metrics, "macro_f1")),
        "ece": _number(metric(version.metrics, "ece")),
        "figures": model_figures(version.metrics),
    }


def running_run(project: Project) -> dict[str, Any] | None:
    open_states = [RunStatus.QUEUED, RunStatus.RUNNING]
    runs = TrainingRun.objects.filter(project=project, status__in=open_states).select_related("model_version")
    run = runs.first()
    return _run_row(run) if run else None


def labeling_progress(*, project: Project, user: Any) -> dict[str, Any]:
    """The labeling page's strip: labeled today (mine and all), queue remaining, champion, running run."""
    start_of_day = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    today = Annotation.objects.filter(project=project, created_at__gte=start_of_day)
    champion = champion_get(project_id=project.pk)
    # Every annotator's page polls this: the two whole-pool counts are one grouped read, cached on
    # large projects (labeling/selectors/poolcache.py).
    pool = poolcache.pool_figures(
        project_id=project.pk, champion_id=None, name="progress", compute=lambda: _document_totals(project)
    )
    return {
        "labeled_today_mine": today.filter(annotator=user).count(),
        "labeled_today": today.count(),
        "queue_remaining": pool["documents"] - pool["labeled"],
        "labeled_total": pool["labeled"],
        "pool_figures_as_of": pool["as_of"],
        "champion": model_summary(champion),
        "running_run": running_run(project),
    }


def _document_totals(project: Project) -> dict[str, int]:
    return _document_totals_of(stats.document_counts(project))


def _document_totals_of(docs: dict[str, dict[str, int]]) -> dict[str, int]:
    return {
        "documents": sum(split["total"] for split in docs.values()),
        "labeled": sum(split["labeled"] for split in docs.values()),
    }


def learning_curve(*, project: Project) -> list[dict[str, Any]]:
    """stats.learning_curve, keeping only versions with a numeric held-out accuracy or macro-F1."""
    points = []
    for row in stats.learning_curve(project):
        acc, f1 = _number(row["accuracy"]), _number(row["macro_f1"])
        if acc is None and f1 is None:
            continue
        points.append({"version": row["model_version"], "status": row["status"], "label_count": row["labels"],
                       "accuracy": acc, "macro_f1": f1, "accuracy_interval": row["accuracy_interval"],
                       "n": row["n"], "too_small": row["too_small"]})
    return sorted(points, key=lambda p: (p["label_count"], p["version"]))


def calibration(*, champion: ModelVersion | None) -> dict[str, Any] | None:
    """The champion's reliability diagram and ECE before and after calibration; None without data."""
    if champion is None:
        return None
    m = champion.metrics
    data = {
        "version": champion.version,
        "ece": _number(metric(m, "ece")),
        "ece_uncalibrated": _number(metric(m, "ece_uncalibrated")),
        "nll": _number(metric(m, "nll")),
        "brier": _number(metric(m, "brier")),
        "auroc_error": _number(metric(m, "auroc_error")),
        "holdout_count": _number(metric(m, "holdout_count") or metric(m, "n")),
        "figures": model_figures(m),
        "reliability": _bins(metric(m, "reliability")),
        "reliability_uncalibrated": _bins(metric(m, "reliability_uncalibrated")),
    }
    if data["ece"] is None and not data["reliability"]:
        return None
    return data


def _champion_predictions(champion: ModelVersion) -> QuerySet[Prediction]:
    return Prediction.objects.filter(model_version=champion)


def uncertainty_histogram(*, champion: ModelVersion) -> dict[str, Any]:
    """Counts of the pool's unlabeled documents by BALD mutual information (entropy if all zero)."""
    preds = _champion_predictions(champion).filter(document__split=Split.POOL, document__is_labeled=False)
    field = "mutual_info"
    span = preds.aggregate(lo=Min(field), hi=Max(field))
    if not span["hi"]:
        field = "entropy"
        span = preds.aggregate(lo=Min(field), hi=Max(field))
    hi = float(span["hi"] or 0.0)
    width = hi / HISTOGRAM_BINS if hi > 0 else 1.0
    # One aggregate query with a filtered count per bin: portable (PostgreSQL and the SQLite demo).
    aggregates = {}
    for b in range(HISTOGRAM_BINS):
        lo = b * width
        cond = Q(**{f"{field}__gte": lo}) if b else Q()
        if b < HISTOGRAM_BINS - 1:
            cond &= Q(**{f"{field}__lt": lo + width})
        aggregates[f"b{b}"] = Count("id", filter=cond)
    counts = preds.aggregate(**aggregates) if hi > 0 else {}
    return {
        "metric": field,
        "bins": [
            {"lower": b * width, "upper": (b + 1) * width, "count": int(counts.get(f"b{b}", 0))}
            for b in range(HISTOGRAM_BINS)
        ] if hi > 0 else [],
    }


def class_balance(*, champion: ModelVersion) -> list[dict[str, Any]]:
    """Predicted labels over the champion's scored documents, blind ones left out."""
    rows = (
        # A join on the document, not NOT IN (blind ids): 1.1 s of the dashboard's 2.6 s at 100,000 docs
        _champion_predictions(champion).exclude(document__split=Split.HOLDOUT, document__is_labeled=False)
        .values("predicted_label").annotate(n=Count("id")).order_by("-n")
    )
    return [{"label": r["predicted_label"], "count": r["n"]} for r in rows]


def embedding_map(*, champion: ModelVersion, max_points: int = MAP_MAX_POINTS) -> list[dict[str, Any]]:
    """The champion's 2-D map, evenly thinned by id to at most ``max_points`` points.

    Blind documents (unlabeled holdout) keep their place but carry no label and no uncertainty.
    """
    preds = _champion_predictions(champion).filter(map_x__isnull=False, map_y__isnull=False)
    n = preds.count()
    if n > max_points:
        preds = preds.annotate(bucket=Mod("id", math.ceil(n / max_points))).filter(bucket=0)
    rows = preds.values_list(
        "document_id", "map_x", "map_y", "predicted_label", "mutual_info", "document__is_labeled",
        "document__split",
    )[:max_points]
    points = []
    for d, x, y, lab, mi, is_lab, split in rows:
        blind = split == Split.HOLDOUT and not is_lab
        points.append({"doc": d, "x": x, "y": y, "label": None if blind else lab,
                       "uncertainty": None if blind else mi, "labeled": is_lab, "split": split})
    return points


def annotator_stats(*, project: Project, user: Any) -> dict[str, Any]:
    """stats.annotator_throughput (labels, per active hour, median time) plus labels per hour over 24 h.

    Managers and reviewers see everyone's row; an annotator sees only their own (as in the API).
    """
    now = timezone.now()
    everyone = roles.can(user, roles.READ_ALL_LABELS, project.pk)
    people = [
        {"annotator": r["username"], "labels": r["labels"], "per_active_hour": r["labels_per_hour"],
         "median_seconds": r["median_duration_ms"] / 1000 if r["median_duration_ms"] is not None else None}
        for r in sorted(stats.annotator_throughput(project), key=lambda r: -r["labels"])
        if everyone or r["username"] == user.get_username()
    ]
    since = (now - timedelta(hours=23)).replace(minute=0, second=0, microsecond=0)
    labels = Annotation.objects.filter(project=project, created_at__gte=since)
    if not everyone:
        labels = labels.filter(annotator_id=user.pk)
    hourly = dict(
        labels.annotate(h=TruncHour("created_at")).values("h").annotate(n=Count("id")).values_list("h", "n")
    )
    hours = [since + timedelta(hours=i) for i in range(24)]
    return {
        "people": people,
        "hourly": [{"hour": h.isoformat(), "count": hourly.get(h, 0)} for h in hours],
    }


def _run_row(run: TrainingRun) -> dict[str, Any]:
    mv = run.model_version
    return {
        "id": run.pk,
        "trigger": run.trigger,
        "status": run.status,
        "stage": run.stage,
        "progress": run.progress,
        "labels_used": run.labels_used,
        "tier": run.tier,
        "train_seconds": _number(run.train_seconds),
        "version": mv.version if mv else None,
        "model_id": mv.pk if mv else None,
        "model_status": mv.status if mv else None,
        "accuracy": _number(metric(mv.metrics, "accuracy")) if mv else None,
        "macro_f1": _number(metric(mv.metrics, "macro_f1")) if mv else None,
        "ece": _number(metric(mv.metrics, "ece")) if mv else None,
        "figures": model_figures(mv.metrics) if mv else None,
        "promoted": run.promoted,
        "decision_reason": run.decision_reason or (mv.decision_reason if mv else ""),
        "error": run.error,
        "created_at": run.created_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def training_runs(*, project: Project, limit: int = RECENT_RUNS) -> list[dict[str, Any]]:
    runs = TrainingRun.objects.filter(project=project).select_related("model_version").order_by("-id")
    return [_run_row(r) for r in runs[:limit]]


def model_versions(*, project: Project) -> list[dict[str, Any]]:
    versions = ModelVersion.objects.filter(project=project).order_by("-version")
    return [s for v in versions if (s := model_summary(v))]


def active_leases(*, project: Project) -> int:
    return Assignment.objects.filter(
        project=project, state=AssignmentState.ACTIVE, leased_until__gt=timezone.now()
    ).count()


def team(*, project: Project) -> dict[str, Any]:
    """Overlap policy, agreement on the overlapped items (with intervals) and the review counts."""
    agreement = project_agreement(project=project, n_boot=DASHBOARD_BOOT)
    return {
        "overlap": project.overlap,
        "overlap_scope": project.overlap_scope,
        "min_agreement": project.min_agreement,
        "noise_review_share": project.noise_review_share,
        "noise_hold_flagged": project.noise_hold_flagged,
        "agreement": {
            k: agreement[k]
            for k in ("n_items", "enough", "note", "alpha", "fleiss_kappa", "masi_alpha", "per_label")
            if k in agreement  # masi_alpha: multi-label projects only
        },
        "review": review_summary(project=project),
    }


def _pool_wide(project: Project, champion: ModelVersion | None) -> dict[str, Any]:
    """The dashboard's figures over every document or champion prediction (labeling/selectors/poolcache.py):
    document counts exact; the prediction figures from a page sample on a large project (poolsample.py)."""
    docs = stats.document_counts(project)
    totals = _document_totals_of(docs)
    counts = {**totals, "holdout": docs["holdout"]["total"], "holdout_labeled": docs["holdout"]["labeled"]}
    sample = poolsample.document_sample(project_id=project.pk, documents=totals["documents"]) if champion else None
    rows = poolsample.sampled_rows(sample, champion) if sample is not None and champion is not None else None
    if sample is not None and rows is not None and rows.sampled:  # a draw of no row: counted whole below
        return {
            "counts": counts,
            "histogram": poolsample.histogram(rows, sample, HISTOGRAM_BINS),
            "class_balance": poolsample.class_balance(rows, sample),
            "coverage": poolsample.coverage(rows, docs["pool"]["total"]),
            "map": poolsample.embedding_map(rows, MAP_MAX_POINTS),
            "sample": sample.describe(rows.sampled),
        }
    return {
        "counts": counts,
        "histogram": uncertainty_histogram(champion=champion) if champion else None,
        "class_balance": class_balance(champion=champion) if champion else [],
        "coverage": stats.champion_coverage(project, champion, pool_documents=docs["pool"]["total"]),
        "map": embedding_map(champion=champion) if champion else [],
        "sample": None,
    }


def dashboard(
    *, project: Project, user: Any, include_quality: bool = False, include_flags: bool = False
) -> dict[str, Any]:
    """Everything the dashboard draws for ``user``, in one JSON document (annotator quality and flags for managers)."""
    champion = champion_get(project_id=project.pk)
    pool = poolcache.pool_figures(
        project_id=project.pk, champion_id=champion.pk if champion else None, name="dashboard",
        compute=lambda: _pool_wide(project, champion),
    )
    return {
        "project": {
            "id": project.pk, "name": project.name, "labels": list(project.label_space.names),
            "task_type": project.task_type,
        },
        "counts": {
            **pool["counts"],
            "annotations": Annotation.objects.filter(project=project).count(),
            "active_leases": active_leases(project=project),
        },
        "champion": model_summary(champion),
        "learning_curve": learning_curve(project=project),
        "calibration": calibration(champion=champion),
        "pool": {key: pool.get(key) for key in ("histogram", "class_balance", "coverage", "as_of", "sample")},
        "annotators": annotator_stats(project=project, user=user),
        "runs": training_runs(project=project),
        "running_run": running_run(project),
        "versions": model_versions(project=project),
        "map": pool["map"],
        "team": team(project=project),
        "multi_label": multi_label_summary(project=project, champion=champion, n_boot=DASHBOARD_BOOT)
        if project.label_space.answer_field == "labels"
        else None,
        **({"quality": annotator_quality(project=project, n_boot=DASHBOARD_BOOT)} if include_quality else {}),
        **({"flags": flag_counts(project=project)} if include_flags else {}),
    }
