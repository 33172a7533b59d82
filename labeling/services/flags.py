"""Flags: an annotator marks a document unclear, offensive or a duplicate, with an optional comment.

A flag sends the document to review: it joins the document's open review item, or opens one with
reason ``flag`` (the one-open-item-per-document constraint holds either way), so reviewers meet it in
their queue and decide its label there. The comment is a ``ReviewComment`` on that item (one comment
system). Flagging the same item again with the same kind changes nothing.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from labeling.models import Document, DocumentFlag, FlagKind, ReviewItem, ReviewReason, ReviewState
from labeling.services.review import MAX_COMMENT_CHARS, review_comment


def _open_item(document: Document) -> ReviewItem:
    """The document's open review item, opened for reason ``flag`` when it has none (inside a transaction)."""
    ReviewItem.objects.bulk_create(
        [ReviewItem(project_id=document.project_id, document=document, reason=ReviewReason.FLAG)],
        ignore_conflicts=True,  # an open item exists already (or a concurrent flag just opened one)
    )
    return ReviewItem.objects.select_for_update().get(document=document, state=ReviewState.OPEN)


def document_flag(*, document: Document, author: Any, kind: Any, comment: Any = "") -> tuple[DocumentFlag, bool]:
    """Flag ``document``; returns (the flag, whether it is new). Nothing is written when an argument is bad."""
    if kind not in FlagKind.values:
        raise ValidationError({"kind": f"must be one of {FlagKind.values}"})
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise ValidationError({"comment": f"must be text of at most {MAX_COMMENT_CHARS:,} characters"})
    with transaction.atomic():
        item = _open_item(document)
        existing = DocumentFlag.objects.filter(item=item, author=author, kind=kind).first()
        if existing is not None:
            return existing, False
        try:
            with transaction.atomic():
                note = review_comment(item=item, author=author, text=comment) if comment.strip() else None
                flag = DocumentFlag.objects.create(
                    project_id=document.project_id, document=document, author=author, kind=kind, item=item,
                    comment=note,
                )
        except IntegrityError:  # the same flag, sent twice at once: the first one stands
            return DocumentFlag.objects.get(item=item, author=author, kind=kind), False
    return flag, True
