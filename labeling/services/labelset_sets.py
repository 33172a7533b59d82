"""Label-set changes on a multi-label project: the stored sets follow the change.

A multi-label answer is one text column holding a set (``MultiLabel``: names in label-set order joined
by ``SET_SEPARATOR``). A rename, merge or retire rewrites every stored set that names a changed label,
in the new set's order, in the columns that hold one:

- annotations (``Annotation.label``): each rewrite leaves an ``AnnotationRevision`` (old set -> new set,
  by the manager who made the change), so no label given is lost from the history;
- reviewers' decisions (``ReviewDecision.label`` and ``replaced_label``);
- gold labels and imported suggestions (``Document.gold_label``, ``Document.suggested_label``).

rename maps one name to another; merge maps each merged name to the target (a set holding both keeps
the target once); retire drops the name. A set a retire would leave empty is **not** rewritten to the
empty set: the annotator chose that label, not "none applies". The annotation keeps its answer as given
(it names a retired label, so it no longer counts) and the document goes back to the queue for it, as a
split sends documents back (``labelset._send_back``): the annotator (or anyone the overlap policy serves)
answers again under the new set. A reviewer's decision a retire would empty is kept as given too (no
longer counts: the document's final label is its annotators' again). Gold labels and suggestions are
not answers given here: a gold set loses the name (``""``: none of the current labels applies), a
suggestion that held only it is no suggestion any more (``""``).

Stored predictions are not rewritten: each belongs to the model version that made it, read through that
version's own label map, and the change retires the champion (``labelset._commit``), so none of them
ranks the queue or shows on a page; the retrain requested scores the pool again on the new set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Model, Q
from django.utils import timezone

from labeling.labelspace import SET_SEPARATOR, MultiLabel
from labeling.models import Annotation, AnnotationRevision, Document, Project, ReviewDecision


def sets_naming(column: str, names: Sequence[str]) -> Q:
    """Rows whose stored set in ``column`` names any of ``names`` (exact names: LIKE wildcards escaped)."""
    q = Q()
    for name in names:
        q |= (
            Q(**{column: name})
            | Q(**{f"{column}__startswith": name + SET_SEPARATOR})
            | Q(**{f"{column}__endswith": SET_SEPARATOR + name})
            | Q(**{f"{column}__contains": SET_SEPARATOR + name + SET_SEPARATOR})
        )
    return q


def _set_column(model: type[Model], column: str, rows: Sequence[tuple[int, str]], **also: Any) -> None:
    """One UPDATE ... FROM unnest(ids, values): each row's ``column`` to its own value (and ``also`` to one).

    ``bulk_update``'s CASE WHEN per row grows with the batch squared; a rename over a few thousand
    sets spent most of its time there.
    """
    if not rows:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    extra = "".join(f", {connection.ops.quote_name(name)} = %s" for name in also)
    if connection.vendor != "postgresql":  # SQLite (the demo): no arrays; one UPDATE per row
        with connection.cursor() as cursor:
            cursor.executemany(
                f"UPDATE {table} SET {connection.ops.quote_name(column)} = %s{extra} WHERE id = %s",
                [(value, *also.values(), pk) for pk, value in rows],
            )
        return
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS t SET {connection.ops.quote_name(column)} = v.value{extra} "
            "FROM unnest(%s::bigint[], %s::text[]) AS v(id, value) WHERE t.id = v.id",
            [*also.values(), [pk for pk, _ in rows], [value for _, value in rows]],
        )


@dataclass(frozen=True)
class SetsRewritten:
    migrated: int  # annotations whose set was rewritten (a revision each)
    emptied: list[int] = field(default_factory=list)  # annotations a retire would empty: kept, sent back
    decisions: int = 0
    gold: int = 0
    suggestions: int = 0


def sets_rewrite(
    *, project: Project, new_names: Sequence[str], mapping: Mapping[str, str | None], by: Any
) -> SetsRewritten:
    """Rewrite the stored sets of ``project`` that name a key of ``mapping``; see the module docstring."""
    space = MultiLabel(new_names)
    changed = list(mapping)
    now = timezone.now()

    rows = list(
        Annotation.objects.filter(project=project)
        .filter(sets_naming("label", changed))
        .order_by("id")
        .values_list("pk", "label")
    )
    moves: list[tuple[int, str, str]] = []
    emptied: list[int] = []
    for pk, old in rows:
        new = space.relabel(old, mapping)
        if new == old:
            continue
        if not new:
            emptied.append(pk)
        else:
            moves.append((pk, old, new))
    if moves:
        changed_by = by if getattr(by, "is_authenticated", False) else None
        if changed_by is None:
            raise ValidationError({"by": "a label-set change that moves labels needs a user to record it"})
        AnnotationRevision.objects.bulk_create(
            [
                AnnotationRevision(
                    annotation_id=pk, previous_label=old, new_label=new, changed_by=changed_by, changed_at=now
                )
                for pk, old, new in moves
            ],
            batch_size=2000,
        )
        _set_column(Annotation, "label", [(pk, new) for pk, _, new in moves], updated_at=now)

    decisions: list[ReviewDecision] = []
    for decision in ReviewDecision.objects.filter(project=project).filter(
        sets_naming("label", changed) | sets_naming("replaced_label", changed)
    ):
        label, replaced = space.relabel(decision.label, mapping), space.relabel(decision.replaced_label, mapping)
        # A set a retire would empty stays as given (the reviewer chose that label, not "none applies").
        decision.label = label or decision.label
        decision.replaced_label = replaced or decision.replaced_label
        decisions.append(decision)
    ReviewDecision.objects.bulk_update(decisions, ["label", "replaced_label"], batch_size=2000)

    docs = {"gold_label": 0, "suggested_label": 0}
    for column in docs:
        held = Document.objects.filter(project=project).filter(sets_naming(column, changed)).values_list("pk", column)
        updates = [(pk, space.relabel(old, mapping)) for pk, old in held]
        _set_column(Document, column, updates)
        docs[column] = len(updates)
    return SetsRewritten(
        migrated=len(moves),
        emptied=emptied,
        decisions=len(decisions),
        gold=docs["gold_label"],
        suggestions=docs["suggested_label"],
    )
