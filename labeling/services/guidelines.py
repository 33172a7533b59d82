"""Guidelines writes: a project's labeling guidelines and per-label notes (Markdown source; audited).

Only the source is stored; ``labeling.selectors.guidelines`` renders and sanitises it on read.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from labeling.models import AuditAction, Project
from labeling.services.audit import audit_record

MAX_GUIDELINES_CHARS = 20_000
MAX_LABEL_NOTE_CHARS = 5_000

def _text_problem(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return "must be text (Markdown)"
    if len(value) > limit:
        return f"must be at most {limit:,} characters (got {len(value):,})"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None


def _labels_clean(project: Project, notes: Any) -> dict[str, str]:
    if not isinstance(notes, dict):
        raise ValidationError({"labels": "must be an object {label name: Markdown}"})
    names = set(project.label_names)
    cleaned: dict[str, str] = {}
    for name, text in notes.items():
        if name not in names:
            raise ValidationError({"labels": f"{name!r} is not a label of this project ({sorted(names)})"})
        if (problem := _text_problem(text, MAX_LABEL_NOTE_CHARS)) is not None:
            raise ValidationError({f"labels.{name}": problem})
        if text.strip():
            cleaned[name] = text
    return cleaned


@transaction.atomic
def guidelines_update(
    *, project: Project, by: Any = None, markdown: Any = None, labels: Any = None
) -> Project:
    """Replace the guidelines (``markdown``) and/or the per-label notes (``labels``; a label left out loses its note).

    Either may be None (left as is). Everything is checked before anything is written; the change is audited
    with the old and new source.
    """
    if markdown is not None and (problem := _text_problem(markdown, MAX_GUIDELINES_CHARS)) is not None:
        raise ValidationError({"markdown": problem})
    locked = Project.objects.select_for_update().get(pk=project.pk)
    new_labels = _labels_clean(locked, labels) if labels is not None else None
    changes: dict[str, Any] = {}
    if markdown is not None and markdown != locked.guidelines:
        changes["guidelines"] = {"old": locked.guidelines, "new": markdown}
        locked.guidelines = markdown
    if new_labels is not None and new_labels != locked.label_guidelines:
        changes["label_guidelines"] = {"old": locked.label_guidelines, "new": new_labels}
        locked.label_guidelines = new_labels
    if changes:  # an update that changes nothing writes and records nothing
        locked.save(update_fields=list(changes))
        audit_record(actor=by, action=AuditAction.GUIDELINES_UPDATED, project=locked, target=locked, data=changes)
    return locked
