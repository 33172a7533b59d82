"""Review reads: an item with everything a reviewer decides on, the review list, the review counts."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, F, Q, QuerySet

from labeling.models import Annotation, Project, ReviewDecision, ReviewItem, ReviewState, Split
from labeling.selectors.consensus import final_labels
from labeling.selectors.models import champion_prediction


def review_items(*, project: Project, state: str | None = None) -> QuerySet[ReviewItem]:
    items = ReviewItem.objects.filter(project=project).select_related("document", "reviewer")
    if state is not None:
        items = items.filter(state=state)
    return items.order_by("-id")


def review_item_detail(item: ReviewItem) -> dict[str, Any]:
    """The item, its document, every label with its annotator, the consensus, the model's view, the history.

    The model's prediction is left out for holdout documents: their final labels are the honest
    evaluation's truth, and must be decided blind to the model, as they were labeled.
    """
    document = item.document
    project = item.project
    final = final_labels(project=project, document_ids=[document.pk]).get(document.pk)
    labels = (
        Annotation.objects.filter(document=document)
        .order_by("id")
        .values("id", "label", "annotator__username", "created_at", "duration_ms")
    )
    prediction = None
    if document.split != Split.HOLDOUT:
        champion = champion_prediction(document_id=document.pk, project_id=project.pk)
        if champion is not None:
            prediction = {
                "model_version": champion.model_version.version,
                "label": champion.predicted_label,
                "confidence": champion.confidence,
                "probabilities": project.label_space.probabilities(champion.probabilities),
            }
    decisions = item.decisions.select_related("reviewer").order_by("id")
    comments = item.comments.select_related("author").order_by("id")
    flags = item.flags.select_related("author", "comment").order_by("id")
    return {
        "id": item.pk,
        "reason": item.reason,
        "score": item.score,
        "state": item.state,
        "reviewer": item.reviewer.get_username() if item.reviewer else None,
        "leased_until": item.leased_until,
        "created_at": item.created_at,
        "decided_at": item.decided_at,
        "document": {
            "id": document.pk,
            "external_id": document.external_id,
            "text": document.text,
            "metadata": document.metadata,
            "split": document.split,
            "labels_required": document.labels_required,
        },
        "labels": [
            {
                "annotation_id": row["id"],
                "annotator": row["annotator__username"],
                "label": row["label"],
                "labeled_at": row["created_at"],
                "duration_ms": row["duration_ms"],
            }
            for row in labels
        ],
        "consensus": {
            "label": final.consensus.label if final else None,
            "agreement": final.consensus.agreement if final else 0.0,
            "reason": final.consensus.reason if final else "no_answer",
        },
        "final_label": final.label if final else None,
        "decided_by": final.decided_by if final else "",
        "prediction": prediction,
        "decisions": [
            {
                "id": d.pk,
                "reviewer": d.reviewer.get_username(),
                "action": d.action,
                "label": d.label,
                "replaced_label": d.replaced_label,
                "replaced_by": d.replaced_by,
                "comment": d.comment,
                "created_at": d.created_at,
            }
            for d in decisions
        ],
        "comments": [
            {"id": c.pk, "author": c.author.get_username(), "text": c.text, "created_at": c.created_at}
            for c in comments
        ],
        "flags": [
            {"id": fl.pk, "kind": fl.kind, "author": fl.author.get_username(),
             "comment": fl.comment.text if fl.comment else "", "created_at": fl.created_at}
            for fl in flags
        ],
        "label_set": project.labels,
    }


def review_summary(*, project: Project) -> dict[str, Any]:
    """Open items by reason, decisions, and how many decisions changed a document's label."""
    by_reason = dict(
        ReviewItem.objects.filter(project=project, state=ReviewState.OPEN)
        .values_list("reason")
        .annotate(n=Count("id"))
        .values_list("reason", "n")
    )
    decisions = ReviewDecision.objects.filter(project=project).aggregate(
        total=Count("id"),
        changed=Count("id", filter=~Q(replaced_label="") & ~Q(label=F("replaced_label"))),
        overrides=Count("id", filter=Q(action="override")),
    )
    flagged = ReviewItem.objects.filter(project=project, reason="noise").count()
    return {
        "open": sum(by_reason.values()),
        "open_by_reason": by_reason,
        "decided": decisions["total"],
        "changed_label": decisions["changed"],
        "overrides": decisions["overrides"],
        "flagged_noise": flagged,
    }
