"""An answer as a request gives it (``label``: one name, or ``labels``: a list) to the stored text.

Which field a project takes is its label space's (``LabelSpace.answer_field``): a single-label project
answers with ``label``, a multi-label one with ``labels`` (the empty list when no label applies). The
other field is a 400 naming it, so a set sent to a single-label project, or one name sent to a
multi-label project, stores nothing instead of being guessed at.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError

from labeling.models import Project

#: Marks a field the request did not send (``None`` is a value a client may send).
UNSET = object()
ANSWER_FIELDS = ("label", "labels")


def answer_validate(project: Project, *, label: object = UNSET, labels: object = UNSET) -> str:
    """The stored text of a valid answer to ``project``; a ValidationError naming the field otherwise."""
    space = project.label_space
    field = space.answer_field
    given = {"label": label, "labels": labels}
    for other in ANSWER_FIELDS:
        if other != field and given[other] is not UNSET:
            raise ValidationError(
                {
                    other: f"this project is {space.task_type}: answer with `{field}`"
                    + (" (a list of label names; [] when none applies)" if field == "labels" else " (one label name)")
                }
            )
    value = given[field]
    if value is UNSET:
        raise ValidationError({field: "this field is required"})
    problem = space.validate_answer(value)
    if problem is not None:
        raise ValidationError({field: problem})
    return space.store(value)
