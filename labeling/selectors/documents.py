"""Document reads: filtered lists for the API, one document with its labels and prediction history."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import OuterRef, Prefetch, QuerySet, Subquery

from labeling.models import Annotation, Document, ModelStatus, Prediction, Project


@dataclass(frozen=True)
class DocumentFilters:
    labeled: bool | None = None
    split: str | None = None
    predicted_label: str | None = None
    uncertainty_min: float | None = None  # on the champion's acquisition score
    uncertainty_max: float | None = None
    search: str | None = None


def _champion_prediction(field: str) -> Subquery:
    return Subquery(
        Prediction.objects.filter(document=OuterRef("pk"), model_version__status=ModelStatus.CHAMPION).values(
            field
        )[:1]
    )


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


def document_detail(*, project: Project, document_id: int) -> Document:
    """One document with its annotations and every model version's prediction (newest first)."""
    return (
        Document.objects.filter(project=project)
        .prefetch_related(
            Prefetch("annotations", queryset=Annotation.objects.select_related("annotator").order_by("pk")),
            Prefetch(
                "predictions",
                queryset=Prediction.objects.select_related("model_version").order_by(
                    "-model_version__version"
                ),
            ),
        )
        .get(pk=document_id)
    )
