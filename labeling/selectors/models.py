"""Reads about model versions, predictions and training runs."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from django.db.models import Exists, OuterRef, QuerySet

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

OPEN_RUN_STATES = (RunStatus.QUEUED, RunStatus.RUNNING)


def champion_get(*, project_id: int) -> ModelVersion | None:
    return ModelVersion.objects.filter(project_id=project_id, status=ModelStatus.CHAMPION).first()


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


def documents_unscored(*, model_version: ModelVersion) -> QuerySet[Document]:
    """Documents of the model's project (pool and holdout) without a prediction from it, newest first."""
    scored = Prediction.objects.filter(document=OuterRef("pk"), model_version=model_version)
    return (
        Document.objects.filter(project_id=model_version.project_id).exclude(Exists(scored)).order_by("-id")
    )


def labeled_count(*, project_id: int, split: str = Split.POOL) -> int:
    """Documents of ``split`` with at least one annotation (the truth, not the denormalised flag)."""
    has_label = Annotation.objects.filter(document=OuterRef("pk"))
    return Document.objects.filter(project_id=project_id, split=split).filter(Exists(has_label)).count()


def majority_labels(*, project: Project, split: str) -> list[tuple[int, str, str]]:
    """(document id, text, label) per labeled document of ``split``, newest first.

    Several annotators: the most frequent label wins; a tie goes to the label given first. Labels
    no longer in the project's label set are ignored.
    """
    valid = set(project.label_names)
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    first_seen: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (
        Annotation.objects.filter(document__project=project, document__split=split)
        .order_by("id")
        .values_list("id", "document_id", "label")
    )
    for ann_id, doc_id, label in rows:
        if label in valid:
            votes[doc_id][label] += 1
            first_seen[doc_id].setdefault(label, ann_id)
    texts = dict(Document.objects.filter(pk__in=list(votes)).values_list("id", "text"))
    out = []
    for doc_id in sorted(votes, reverse=True):
        counter = votes[doc_id]
        label = min(counter, key=lambda lab: (-counter[lab], first_seen[doc_id][lab]))
        out.append((doc_id, texts[doc_id], label))
    return out


def model_versions_for(*, project_id: int) -> Iterable[ModelVersion]:
    """Every model of a project, oldest first: the learning curve (train_label_count vs metrics)."""
    return ModelVersion.objects.filter(project_id=project_id).order_by("version")
