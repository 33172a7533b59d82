"""Reads about model versions, predictions and training runs."""

from __future__ import annotations

import math
from typing import Any

from django.db import connection
from django.db.models import Exists, OuterRef

from labeling.models import (
    Annotation,
    Document,
    ModelStatus,
    ModelVersion,
    Prediction,
    Project,
    RunStatus,
    Split,
    TrainingRun,
)
from labeling.selectors.consensus import training_labels
from modelsvc.calibration import MIN_N_TO_JUDGE, accuracy_interval

OPEN_RUN_STATES = (RunStatus.QUEUED, RunStatus.RUNNING)


def champion_get(*, project_id: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project_id=project_id, status=ModelStatus.CHAMPION).first()


def champion_prediction(*, document_id: int, project_id: int) -> Prediction | None:
    """The current champion's prediction of one document; its model version comes without the metrics
    and calibration JSON (tens of KB, not needed to show or record a prediction)."""
    return (
        Prediction.objects.filter(
            document_id=document_id, model_version__project_id=project_id, model_version__status=ModelStatus.CHAMPION
        )
        .select_related("model_version")
        .defer("model_version__metrics", "model_version__calibration")
        .first()
    )


def latest_trained_version(*, project_id: int) -> ModelVersion | None:
    """The newest finished model (champion, candidate, rejected or retired): the retrain baseline."""
    return (
        ModelVersion.objects.filter(project_id=project_id)
        .exclude(status=ModelStatus.TRAINING)
        .order_by("-version")
        .first()
    )


def training_run_open(*, project_id: int) -> TrainingRun | None:
    return TrainingRun.objects.filter(project_id=project_id, status__in=OPEN_RUN_STATES).first()


def documents_unscored_page(
    model_version: ModelVersion, *, below: int | None, size: int, at_least: int | None = None
) -> tuple[list[tuple[int, str]], int | None]:
    """The next ``size`` documents below id ``below`` (newest first), less those already scored.

    ``at_least``: the walk ends at this id (a slice of the project's ids, ``documents_id_slices``).

    Returns (unscored (id, text) pairs, the new cursor); the cursor is None once no document is left.
    A keyset walk with two index lookups per page, instead of a NOT EXISTS anti-join: the planner
    knows nothing about a brand-new model version's predictions, and the anti-join re-reads every
    prediction written so far on each batch: a re-score quadratic in the pool (docs/BENCHMARKS.md).
    """
    documents = Document.objects.filter(project_id=model_version.project_id)
    if below is not None:
        documents = documents.filter(id__lt=below)
    if at_least is not None:
        documents = documents.filter(id__gte=at_least)
    ids = list(documents.order_by("-id").values_list("id", flat=True)[:size])
    if not ids:
        return [], None
    # Both lookups are id ranges (the page's first to last id), not IN lists: compiling an IN list of a
    # few thousand ids cost more than running it. What the version scored is looked up by document only
    # (the unique (document, model_version) index) and the version picked out here: with the version in
    # the WHERE clause, a brand-new version (its statistics say "no rows") made the planner walk the
    # model-version index, every row of the version written so far, on each page, which made a re-score
    # quadratic again (docs/BENCHMARKS.md). Other projects' documents interleaved in the range cost a
    # few extra rows.
    first, last = ids[-1], ids[0]
    wanted = set(ids)
    scored = {
        document_id
        for document_id, version_id in Prediction.objects.filter(
            document_id__gte=first, document_id__lte=last
        ).values_list("document_id", "model_version_id")
        if version_id == model_version.pk and document_id in wanted
    }
    missing = [i for i in ids if i not in scored]
    if not missing:  # a page scored before (a continuation walks past them): no texts read
        return [], first
    texts = dict(documents.filter(id__gte=first, id__lte=last).values_list("id", "text"))
    return [(i, texts[i]) for i in missing if i in texts], first


def documents_id_slices(*, project_id: int, slices: int) -> list[tuple[int, int]]:
    """The project's document ids cut into ``slices`` disjoint ranges of about equal counts.

    [(first id, last id)] ascending, each inclusive; fewer when the project has fewer documents. One
    window-function statement (ntile over the project's id index).
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT MIN(id), MAX(id) FROM (SELECT id, NTILE(%s) OVER (ORDER BY id) AS part"
            f" FROM {connection.ops.quote_name(Document._meta.db_table)} WHERE project_id = %s) AS parts"
            f" GROUP BY part ORDER BY part",
            [slices, project_id],
        )
        return [(int(lo), int(hi)) for lo, hi in cursor.fetchall()]


def champion_has_gaps(model_version: ModelVersion) -> bool:
    """Whether some document of the project lacks a prediction from ``model_version``.

    Two index counts: predictions only exist for the project's documents (deletes cascade), so
    equal counts mean every document is scored. Cheap enough for the reconciliation beat, unlike
    an anti-join that walks every scored document.
    """
    documents = Document.objects.filter(project_id=model_version.project_id).count()
    return Prediction.objects.filter(model_version=model_version).count() < documents


def labeled_count(*, project_id: int, split: str = Split.POOL) -> int:
    """Documents of ``split`` with at least one annotation (the truth, not the denormalised flag)."""
    has_label = Annotation.objects.filter(document=OuterRef("pk"))
    return Document.objects.filter(project_id=project_id, split=split).filter(Exists(has_label)).count()


def majority_labels(
    *, project: Project, split: str, hold_flagged: bool | None = None
) -> list[tuple[int, str, str]]:
    """(document id, text, label) per document of ``split`` with a final label, newest first.

    The final label is a reviewer's decision, else the project's consensus of its complete labels
    (``labeling.selectors.consensus``: majority with the project's minimum agreement; a tie or a
    document still waiting for labels has none). Labels no longer in the project's set do not vote.
    A label the noise loop flagged is held back until a reviewer decides it where the project chose so
    (``Project.noise_hold_flagged``, off by default; ``hold_flagged`` overrides it).
    """
    return training_labels(project=project, split=split, hold_flagged=hold_flagged)


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _pair(value: object) -> list[float] | None:
    if isinstance(value, list | tuple) and len(value) == 2:
        lo, hi = _finite(value[0]), _finite(value[1])
        if lo is not None and hi is not None:
            return [lo, hi]
    return None


def model_figures(metrics: object) -> dict[str, Any]:
    """A model version's accuracy and ECE with their 95 % intervals, the n they rest on, and whether n
    is too small to judge (below ``MIN_N_TO_JUDGE`` items): what every page and API shows with them.

    Reads ``metrics["intervals"]`` (``modelsvc.calibration.small_sample_summary``); for versions stored
    before it, the accuracy's Wilson interval is recomputed from ``holdout_count`` and the ECE has none.
    """
    m = metrics if isinstance(metrics, dict) else {}
    iv = m.get("intervals") if isinstance(m.get("intervals"), dict) else {}
    accuracy, ece = _finite(m.get("accuracy")), _finite(m.get("ece"))
    n_value = _finite(iv.get("n"))
    if n_value is None:
        n_value = _finite(m.get("holdout_count") or m.get("n"))
    n = int(n_value) if n_value is not None else None
    accuracy_iv = _pair(iv.get("accuracy"))
    if accuracy_iv is None and accuracy is not None and n:
        accuracy_iv = list(accuracy_interval(round(accuracy * n), n))
    return {
        "accuracy": accuracy,
        "accuracy_interval": accuracy_iv,
        "ece": ece,
        "ece_interval": _pair(iv.get("ece")),
        "ece_noise_floor": _finite(iv.get("ece_noise_floor")),
        "n": n,
        "min_n": MIN_N_TO_JUDGE,
        "too_small": None if n is None else n < MIN_N_TO_JUDGE,
        "evaluated_on": m.get("evaluated_on") if isinstance(m.get("evaluated_on"), str) else None,
    }
