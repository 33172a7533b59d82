"""Flag reads: which documents a user may flag, the project's flags (filterable), and their counts."""

from __future__ import annotations

from typing import Any

from django.db.models import Count, Q, QuerySet

from labeling.models import Annotation, Assignment, AssignmentState, Document, DocumentFlag, FlagKind, Project


def flaggable_document(*, project: Project, document_id: int, user: Any, any_document: bool) -> Document | None:
    """The document, if ``user`` may flag it: any of the project's (reviewers, managers: ``any_document``),
    else one they hold a lease on, finished a lease on, or labeled."""
    document = Document.objects.filter(pk=document_id, project=project).first()
    if document is None or any_document:
        return document
    held = Assignment.objects.filter(
        document=document, annotator_id=user.pk, state__in=[AssignmentState.ACTIVE, AssignmentState.DONE]
    ).exists()
    if held or Annotation.objects.filter(document=document, annotator_id=user.pk).exists():
        return document
    return None


def flags_list(*, project: Project, kind: str | None = None, state: str | None = None) -> QuerySet[DocumentFlag]:
    """Newest first; ``state`` is the review item's (open: not decided yet)."""
    flags = DocumentFlag.objects.filter(project=project).select_related("author", "item", "comment")
    if kind is not None:
        flags = flags.filter(kind=kind)
    if state is not None:
        flags = flags.filter(item__state=state)
    return flags.order_by("-id")


def flag_counts(*, project: Project) -> dict[str, Any]:
    """Flags whose item is still in review (``open``, by kind) and all flags ever (``total``)."""
    row = DocumentFlag.objects.filter(project=project).aggregate(
        total=Count("id"),
        open=Count("id", filter=Q(item__state="open")),
        **{kind: Count("id", filter=Q(item__state="open", kind=kind)) for kind in FlagKind.values},
    )
    return {"open": row["open"], "total": row["total"], "open_by_kind": {k: row[k] for k in FlagKind.values}}
