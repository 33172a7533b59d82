"""Document reads: filtered lists for the API, one document with its labels and prediction history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Case, OuterRef, Prefetch, Q, QuerySet, Subquery, When

from labeling import roles
from labeling.models import Annotation, Document, ModelStatus, Prediction, Project, Split

# Unlabeled holdout documents are labeled blind: no read anyone can make (dashboard, API, pages)
# carries the model's label, confidence or uncertainty for them, or the evaluation labels are biased.
BLIND = Q(split=Split.HOLDOUT, is_labeled=False)


def is_blind(document: Document) -> bool:
    return document.split == Split.HOLDOUT and not document.is_labeled


@dataclass(frozen=True)
class DocumentFilters:
    labeled: bool | None = None
    split: str | None = None
    predicted_label: str | None = None
    uncertainty_min: float | None = None  # on the champion's acquisition score
    uncertainty_max: float | None = None
    search: str | None = None


def _champion_prediction(field: str) -> Case:
    """The champion's ``field`` for the outer document, NULL while the document is blind."""
    value = Subquery(
        Prediction.objects.filter(document=OuterRef("pk"), model_version__status=ModelStatus.CHAMPION).values(
            field
        )[:1]
    )
    return Case(When(BLIND, then=None), default=value)


def document_list(*, project: Project, filters: DocumentFilters) -> QuerySet[Document]:
    """Documents of ``project`` with the champion's label, confidence and score annotated, id order."""
    qs = Document.objects.filter(project=project).annotate(
        champion_label=_champion_prediction("predicted_label"),
        champion_confidence=_champion_prediction("confidence"),
        champion_score=_champion_prediction("acquisition_score"),
    )
    if filters.labeled is not None:
        qs = qs.filter(is_labeled=filters.labeled)
    if filters.split:
        qs = qs.filter(split=filters.split)
    if filters.predicted_label:
        qs = qs.filter(champion_label=filters.predicted_label)
    if filters.uncertainty_min is not None:
        qs = qs.filter(champion_score__gte=filters.uncertainty_min)
    if filters.uncertainty_max is not None:
        qs = qs.filter(champion_score__lte=filters.uncertainty_max)
    if filters.search:
        qs = qs.filter(text__icontains=filters.search)
    return qs.order_by("pk")


def visible_annotations(*, project: Project, user: Any) -> QuerySet[Annotation]:
    """The labels of ``project`` that ``user`` may read: everyone's for managers and reviewers, else their own.

    The ingest role labels nothing, so it reads no label and no annotator name.
    """
    qs = Annotation.objects.filter(project=project)
    if roles.can(user, roles.READ_ALL_LABELS, project.pk):
        return qs
    return qs.filter(annotator_id=user.pk) if user.is_authenticated else qs.none()


def document_detail(*, project: Project, document_id: int, user: Any) -> Document:
    """One document with the labels ``user`` may read and every model version's prediction (newest first).

    A blind document (unlabeled holdout) comes with no predictions.
    """
    document = Document.objects.filter(project=project).get(pk=document_id)
    labels = visible_annotations(project=project, user=user).filter(document=document)
    predictions = Prediction.objects.none() if is_blind(document) else Prediction.objects.filter(document=document)
    return (
        Document.objects.filter(pk=document.pk)
        .prefetch_related(
            Prefetch("annotations", queryset=labels.select_related("annotator").order_by("pk")),
            Prefetch("predictions", queryset=predictions.select_related("model_version").order_by(
                "-model_version__version"
            )),
        )
        .get()
    )
