"""The dashboard's multi-label section: per-label counts, agreement and the model's per-label figures.

The model's figures are whatever the training run recorded on ``ModelVersion.metrics`` (read
defensively, like every dashboard figure: a missing one is ``None``): the headline multi-label metrics
by name (``MODEL_METRICS``) and, per label, any numbers under ``metrics["per_label"][name]`` (F1,
precision, recall, ECE, support ...); the per-label decision thresholds from the model version's
``thresholds`` where it has them.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from labeling.models import Annotation, ModelVersion, Project
from labeling.selectors import stats
from labeling.selectors.agreement import project_agreement

#: The headline figures a multi-label model may record, in the order the dashboard shows them.
MODEL_METRICS = ("micro_f1", "macro_f1", "samples_f1", "subset_accuracy", "hamming_loss", "ece", "mean_label_ece")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _per_label_model(metrics: Any, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    per_label = metrics.get("per_label") if isinstance(metrics, dict) else None
    if not isinstance(per_label, dict):
        return {}
    out: dict[str, dict[str, float]] = {}
    for name in names:
        figures = per_label.get(name)
        if isinstance(figures, dict):
            out[name] = {k: v for k, v in ((k, _number(v)) for k, v in figures.items()) if v is not None}
    return out


def _thresholds(champion: ModelVersion, names: tuple[str, ...]) -> dict[str, float]:
    raw = getattr(champion, "thresholds", None)  # per-label thresholds, where the model side stores them
    if isinstance(raw, dict):
        return {n: v for n in names if (v := _number(raw.get(n))) is not None}
    if isinstance(raw, list) and len(raw) == len(champion.label_map or []):
        given = dict(zip(champion.label_map, raw, strict=True))
        return {n: v for n in names if (v := _number(given.get(n))) is not None}
    return {}


def multi_label_summary(*, project: Project, champion: ModelVersion | None, n_boot: int) -> dict[str, Any]:
    """Per label: answers that include it (pool, holdout), its agreement, the champion's figures."""
    names = project.label_space.names
    counts = stats.label_counts(project)
    empty = dict(
        Annotation.objects.filter(project=project, label="")
        .values_list("document__split")
        .annotate(n=Count("id"))
        .values_list("document__split", "n")
    )
    agreement = project_agreement(project=project, n_boot=n_boot)
    metrics = champion.metrics if champion is not None else None
    model = {key: _number(metrics.get(key)) for key in MODEL_METRICS} if isinstance(metrics, dict) else {}
    per_label_model = _per_label_model(metrics, names)
    thresholds = _thresholds(champion, names) if champion is not None else {}
    return {
        "labels": [
            {
                "name": name,
                "pool": counts.get("pool", {}).get(name, 0),
                "holdout": counts.get("holdout", {}).get(name, 0),
                "agreement": agreement.get("per_label", {}).get(name),
                "model": per_label_model.get(name, {}),
                "threshold": thresholds.get(name),
            }
            for name in names
        ],
        "none_applies": {"pool": empty.get("pool", 0), "holdout": empty.get("holdout", 0)},
        "model": model,
        "model_version": champion.version if champion is not None else None,
        "model_note": None
        if any(v is not None for v in model.values()) or per_label_model
        else "the champion has recorded no multi-label metrics yet"
        if champion is not None
        else "no model yet",
    }
