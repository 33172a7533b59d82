"""Label sets that evolve: add, rename, retire, merge and split labels on a live project.

Each operation is one transaction under the project's row lock. It writes the new set to
``Project.labels`` (the current labels only: pages, the API, imports and the model's head read it, so
a retired label is no longer offered nor accepted), bumps ``Project.label_set_version``, appends a
``LabelSetVersion`` (that version's labels and what the operation did) and an audit event, then:

- rename and merge move the annotations to the new label, each leaving an ``AnnotationRevision``
  (the old label stays visible in the label's history), and carry reviewers' decisions and gold
  labels along;
- split sends the documents labeled with the split label back to the queue: those annotations stay
  (in history and exports, no longer counted), their leases are released so the overlap policy serves
  the free places again, and a new answer from the same annotator replaces the old one with a revision;
- retire keeps every annotation as it was; a label no longer in the set does not vote and is not
  trained on.

After rename, retire, merge and split the project's open disagreement review items are judged again
(``review_labelset``): one whose disagreement the change dissolved is closed with its reason recorded
and audited; one still in disagreement stays open, showing the renamed labels.

A multi-label project's answers are sets in one column: rename, merge and retire rewrite every stored set
that names the label (``labelset_sets``), a split sends back every document whose set names it, and a
retire that would empty an answer sends that document back instead of storing "none applies".

The champion was trained on the old set: it is retired at once (the queue falls back to its seeded
order, nothing ranks or shows predictions of the old labels) and a retrain is requested.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from labeling.labelspace import MULTI_LABEL
from labeling.models import (
    KEY_RE,
    LABEL_NAME_RE,
    RESERVED_KEYS,
    Annotation,
    AnnotationRevision,
    Assignment,
    AssignmentState,
    AuditAction,
    Document,
    LabelSetOperation,
    LabelSetVersion,
    ModelStatus,
    ModelVersion,
    Prediction,
    Project,
    ReviewDecision,
    RunTrigger,
    Split,
    TrainingRun,
    validate_label_set,
)
from labeling.selectors.models import latest_trained_version
from labeling.services.audit import audit_record
from labeling.services.labelset_sets import sets_naming, sets_rewrite
from labeling.services.review_labelset import review_items_relabeled
from labeling.services.training.triggers import training_run_request

_FREE_KEYS = [str(d) for d in range(1, 10)] + [c for c in "abcdefghijklmnopqrtvwxyz"]


def label_set_shared(
    *, project_id: int | None = None, document_id: int | None = None
) -> tuple[list[dict[str, Any]], int]:
    """The project's current labels and label-set version, read under a KEY SHARE lock of its row.

    For the services that store a label (an annotation, an edit, a reviewer's decision). A label-set
    change holds the row FOR UPDATE, which KEY SHARE waits for: a label is validated against the set
    it is stored under, and a rename or merge never misses a label given while it ran. Annotators do
    not block each other (KEY SHARE conflicts neither with itself nor with plain updates of the
    project). Taken before the lease and document locks, in the same order as a label-set change
    takes them, so the two never deadlock.
    """
    where = "id = %s" if project_id is not None else "id = (SELECT project_id FROM labeling_document WHERE id = %s)"
    # SQLite (the demo, replays) has no row locks and needs none: it runs one writer at a time.
    lock = " FOR KEY SHARE" if connection.features.has_select_for_update else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT labels, label_set_version FROM labeling_project WHERE {where}{lock}",
            [project_id if project_id is not None else document_id],
        )
        labels, version = cursor.fetchone()
    return (json.loads(labels) if isinstance(labels, str) else labels), version


@dataclass(frozen=True)
class LabelSetChange:
    """What one operation did."""

    version: LabelSetVersion
    migrated: int = 0  # annotations moved to another label (rename, merge)
    reopened: int = 0  # documents sent back to the queue (split)
    review_closed: int = 0  # open disagreement review items the change dissolved (closed, audited)
    run: TrainingRun | None = None  # the retrain it requested (None: no model trained yet)
    extra: dict[str, Any] = field(default_factory=dict)


def _lock(project: Project) -> Project:
    locked = Project.objects.select_for_update().get(pk=project.pk)
    # Projects created before label sets could change have no history row for their first version.
    LabelSetVersion.objects.get_or_create(
        project=locked,
        version=locked.label_set_version,
        defaults={"labels": locked.labels, "operation": LabelSetOperation.INITIAL},
    )
    return locked


def _is_multi_label(project: Project) -> bool:
    return project.task_type == MULTI_LABEL


def _names_ever(project: Project) -> set[str]:
    names = {item["name"] for item in project.labels}
    for labels in LabelSetVersion.objects.filter(project=project).values_list("labels", flat=True):
        names.update(item["name"] for item in labels if isinstance(item, dict) and "name" in item)
    return names


def _current(project: Project, field_name: str, name: object) -> dict[str, Any]:
    """The current label entry called ``name``, or a ValidationError naming ``field_name``."""
    if not isinstance(name, str) or not name:
        raise ValidationError({field_name: "must be a label name"})
    for item in project.labels:
        if item["name"] == name:
            return dict(item)
    current = [item["name"] for item in project.labels]
    if name in _names_ever(project):
        raise ValidationError({field_name: f"{name!r} is retired: not in the current label set {current}"})
    raise ValidationError({field_name: f"unknown label {name!r}: the current label set is {current}"})


def _new_name(project: Project, field_name: str, name: object, *, taken: set[str] | None = None) -> str:
    """A name no version of the label set has used (a retired name would make history ambiguous)."""
    if not isinstance(name, str) or not LABEL_NAME_RE.match(name):
        raise ValidationError({field_name: f"{name!r} must be 1-64 letters, digits or _.:-"})
    if any(item["name"] == name for item in project.labels):
        raise ValidationError({field_name: f"{name!r} is already a label of this project"})
    if name in _names_ever(project):
        raise ValidationError({field_name: f"{name!r} was a label of an earlier label-set version; pick a new name"})
    if taken is not None and name in taken:
        raise ValidationError({field_name: f"{name!r} is repeated"})
    return name


def _text(field_name: str, text: object, default: str) -> str:
    if text is None or text == "":
        return default
    if not isinstance(text, str) or not (1 <= len(text) <= 200):
        raise ValidationError({field_name: "must be 1-200 characters"})
    return text


def _key(field_name: str, key: object, used: set[str]) -> str:
    """The given key (checked), or the first free one ("" when none is left)."""
    if key is None:
        return next((k for k in _FREE_KEYS if k not in used), "")
    if key == "":
        return ""
    if not isinstance(key, str) or not KEY_RE.match(key) or key in RESERVED_KEYS:
        raise ValidationError({field_name: f"{key!r} must be one of 1-9 or a-z, not s or u"})
    if key in used:
        raise ValidationError({field_name: f"key {key!r} is already used by another label"})
    return key


def _keys(labels: Sequence[dict[str, Any]]) -> set[str]:
    return {str(item.get("key")) for item in labels if item.get("key")}


def _commit(
    project: Project, labels: list[dict[str, Any]], *, operation: str, data: dict[str, Any], by: Any, field_name: str
) -> LabelSetVersion:
    try:
        validate_label_set(labels)
    except ValidationError as exc:
        raise ValidationError({field_name: exc.messages}) from exc
    project.labels = labels
    project.label_set_version += 1
    project.save(update_fields=["labels", "label_set_version"])
    version = LabelSetVersion.objects.create(
        project=project,
        version=project.label_set_version,
        labels=labels,
        operation=operation,
        data=data,
        created_by=by if getattr(by, "is_authenticated", False) else None,
    )
    # The champion's head outputs the old labels: it no longer ranks the queue nor labels predictions.
    retired = list(
        ModelVersion.objects.filter(project=project, status=ModelStatus.CHAMPION).values_list("version", flat=True)
    )
    ModelVersion.objects.filter(project=project, status=ModelStatus.CHAMPION).update(
        status=ModelStatus.RETIRED,
        decision_reason=f"retired: the label set changed to version {version.version} ({operation})",
    )
    audit_record(
        actor=by,
        action=AuditAction.LABEL_SET_CHANGED,
        project=project,
        target=project,
        data={
            "operation": operation,
            "version": version.version,
            **data,
            "retired_champion": retired[0] if retired else None,
            "labels": [item["name"] for item in labels],
        },
    )
    return version


def _retrain(project: Project, caller: Project) -> TrainingRun | None:
    """A retrain on the new set once a model exists (before that, the label threshold starts the first).

    The caller's project instance is brought up to date too (the change was made on a locked copy).
    """
    caller.labels, caller.label_set_version = project.labels, project.label_set_version
    if latest_trained_version(project_id=project.pk) is None:
        return None
    return training_run_request(project=project, trigger=RunTrigger.LABEL_SET)


def _move_labels(project: Project, sources: Sequence[str], target: str, *, by: Any, new_names: Sequence[str]) -> int:
    """Annotations, decisions, gold labels and suggestions from ``sources`` to ``target``; a revision per
    annotation. In a multi-label project every stored set naming a source names ``target`` instead (once)."""
    if _is_multi_label(project):
        return sets_rewrite(
            project=project, new_names=new_names, mapping=dict.fromkeys(sources, target), by=by
        ).migrated
    annotations = Annotation.objects.filter(project=project, label__in=list(sources))
    moved = list(annotations.values_list("pk", "label"))
    if moved:
        changed_by = by if getattr(by, "is_authenticated", False) else None
        if changed_by is None:
            raise ValidationError({"by": "a label-set change that moves labels needs a user to record it"})
        now = timezone.now()
        AnnotationRevision.objects.bulk_create(
            [
                AnnotationRevision(
                    annotation_id=pk, previous_label=old, new_label=target, changed_by=changed_by, changed_at=now
                )
                for pk, old in moved
            ],
            batch_size=2000,
        )
        Annotation.objects.filter(pk__in=[pk for pk, _ in moved]).update(label=target, updated_at=now)
    ReviewDecision.objects.filter(project=project, label__in=list(sources)).update(label=target)
    ReviewDecision.objects.filter(project=project, replaced_label__in=list(sources)).update(replaced_label=target)
    Document.objects.filter(project=project, gold_label__in=list(sources)).update(gold_label=target)
    Document.objects.filter(project=project, suggested_label__in=list(sources)).update(suggested_label=target)
    return len(moved)


@transaction.atomic
def labelset_add(
    *, project: Project, name: object, text: object = None, key: object = None, by: Any = None
) -> LabelSetChange:
    """Append a new label to the set."""
    locked = _lock(project)
    name = _new_name(locked, "name", name)
    entry = {"name": name, "text": _text("text", text, name), "key": _key("key", key, _keys(locked.labels))}
    labels = [*locked.labels, entry]
    version = _commit(locked, labels, operation=LabelSetOperation.ADD, data={"label": name}, by=by, field_name="name")
    return LabelSetChange(version=version, run=_retrain(locked, project))


@transaction.atomic
def labelset_rename(
    *, project: Project, label: object, new_name: object, text: object = None, by: Any = None
) -> LabelSetChange:
    """Rename a label; its annotations (with a revision each), decisions and gold labels follow."""
    locked = _lock(project)
    entry = _current(locked, "label", label)
    old = entry["name"]
    new = _new_name(locked, "new_name", new_name)
    # Other keys of the entry (a description, ...) are kept as they are.
    kept_text = new if entry.get("text", old) == old else entry["text"]  # a text that was the name follows it
    renamed = {**entry, "name": new, "text": _text("text", text, kept_text)}
    labels = [renamed if item["name"] == old else item for item in locked.labels]
    migrated = _move_labels(locked, [old], new, by=by, new_names=[item["name"] for item in labels])
    notes = dict(locked.label_guidelines or {})  # the label's guideline note follows its name
    if old in notes:
        notes[new] = notes.pop(old)
        locked.label_guidelines = notes
        locked.save(update_fields=["label_guidelines"])
    version = _commit(
        locked,
        labels,
        operation=LabelSetOperation.RENAME,
        data={"label": old, "new_name": new, "migrated": migrated},
        by=by,
        field_name="new_name",
    )
    closed = review_items_relabeled(project=locked, operation=LabelSetOperation.RENAME, version=version.version, by=by)
    return LabelSetChange(version=version, migrated=migrated, review_closed=closed, run=_retrain(locked, project))


@transaction.atomic
def labelset_retire(*, project: Project, label: object, by: Any = None) -> LabelSetChange:
    """Take a label out of the set: no longer offered nor accepted; its annotations stay as they are."""
    locked = _lock(project)
    name = _current(locked, "label", label)["name"]
    labels = [item for item in locked.labels if item["name"] != name]
    if len(labels) < 2:
        raise ValidationError({"label": "a project keeps at least 2 labels; add one before retiring this"})
    migrated = reopened = 0
    if _is_multi_label(locked):
        # The label leaves every stored set; a set it would empty stays as given and its document goes
        # back to the queue (labelset_sets: the annotator chose that label, not "none applies").
        rewritten = sets_rewrite(
            project=locked, new_names=[item["name"] for item in labels], mapping={name: None}, by=by
        )
        migrated = rewritten.migrated
        reopened = _send_back(locked, Annotation.objects.filter(pk__in=rewritten.emptied))
        data = {"label": name, "migrated": migrated, "reopened": reopened, "annotations_kept": len(rewritten.emptied)}
    else:
        kept = Annotation.objects.filter(project=locked, label=name).count()
        data = {"label": name, "annotations_kept": kept}
    version = _commit(locked, labels, operation=LabelSetOperation.RETIRE, data=data, by=by, field_name="label")
    closed = review_items_relabeled(project=locked, operation=LabelSetOperation.RETIRE, version=version.version, by=by)
    return LabelSetChange(
        version=version, migrated=migrated, reopened=reopened, review_closed=closed, run=_retrain(locked, project)
    )


@transaction.atomic
def labelset_merge(*, project: Project, labels: object, into: object, by: Any = None) -> LabelSetChange:
    """Merge ``labels`` into the label ``into``; their annotations move to it (a revision each)."""
    locked = _lock(project)
    target = _current(locked, "into", into)["name"]
    if not isinstance(labels, list | tuple) or not labels:
        raise ValidationError({"labels": "must be a non-empty list of the labels to merge"})
    sources: list[str] = []
    for name in labels:
        source = _current(locked, "labels", name)["name"]
        if source == target:
            raise ValidationError({"labels": f"{source!r} is the label merged into ('into'); list the others"})
        if source in sources:
            raise ValidationError({"labels": f"{source!r} is repeated"})
        sources.append(source)
    remaining = [item for item in locked.labels if item["name"] not in sources]
    if len(remaining) < 2:
        raise ValidationError({"labels": "a project keeps at least 2 labels after a merge"})
    migrated = _move_labels(locked, sources, target, by=by, new_names=[item["name"] for item in remaining])
    version = _commit(
        locked,
        remaining,
        operation=LabelSetOperation.MERGE,
        data={"labels": sources, "into": target, "migrated": migrated},
        by=by,
        field_name="labels",
    )
    closed = review_items_relabeled(project=locked, operation=LabelSetOperation.MERGE, version=version.version, by=by)
    return LabelSetChange(version=version, migrated=migrated, review_closed=closed, run=_retrain(locked, project))


def _split_entries(project: Project, new_labels: object, used_keys: set[str]) -> list[dict[str, Any]]:
    if not isinstance(new_labels, list) or len(new_labels) < 2:
        raise ValidationError({"new_labels": "must list at least 2 new labels (one is a rename)"})
    entries: list[dict[str, Any]] = []
    taken: set[str] = set()
    for i, raw in enumerate(new_labels):
        spec = {"name": raw} if isinstance(raw, str) else raw
        if not isinstance(spec, dict) or set(spec) - {"name", "text", "key"}:
            raise ValidationError({"new_labels": f"new_labels[{i}] must be a name or {{name, text, key}}"})
        name = _new_name(project, "new_labels", spec.get("name"), taken=taken)
        taken.add(name)
        key = _key("new_labels", spec.get("key"), used_keys)
        if key:
            used_keys.add(key)
        entries.append({"name": name, "text": _text("new_labels", spec.get("text"), name), "key": key})
    return entries


def _send_back(
    project: Project, answered: QuerySet[Annotation], decided: QuerySet[ReviewDecision] | None = None
) -> int:
    """The documents of the ``answered`` annotations (and ``decided`` decisions) go back to the queue;
    returns how many.

    Their annotations stay (history, exports); a label no longer in the set does not vote. The leases
    that gave those answers are released, so the queue serves those places again (to anyone, the
    same annotators included); other annotators' answers keep their places.
    """
    doc_ids = set(answered.values_list("document_id", flat=True))
    if decided is not None:
        doc_ids |= set(decided.values_list("document_id", flat=True))
    if not doc_ids:
        return 0
    Assignment.objects.filter(annotations__in=answered, state=AssignmentState.DONE).update(
        state=AssignmentState.RELEASED
    )
    Document.objects.filter(pk__in=doc_ids).update(is_labeled=False)
    Prediction.objects.filter(document_id__in=doc_ids, document__split=Split.POOL).update(in_queue=True)
    return len(doc_ids)


@transaction.atomic
def labelset_split(*, project: Project, label: object, new_labels: object, by: Any = None) -> LabelSetChange:
    """Replace ``label`` by ``new_labels`` (in its place); its documents go back to the queue."""
    locked = _lock(project)
    old = _current(locked, "label", label)
    others = [item for item in locked.labels if item["name"] != old["name"]]
    entries = _split_entries(locked, new_labels, _keys(others))
    position = next(i for i, item in enumerate(locked.labels) if item["name"] == old["name"])
    labels = [*locked.labels[:position], *entries, *locked.labels[position + 1 :]]
    # A multi-label answer that names the split label goes back whole: its other labels stay in the old
    # answer (history) and the annotator answers the whole set again under the new labels.
    if _is_multi_label(locked):
        answered = Annotation.objects.filter(project=locked).filter(sets_naming("label", [old["name"]]))
        decided = ReviewDecision.objects.filter(project=locked).filter(sets_naming("label", [old["name"]]))
    else:
        answered = Annotation.objects.filter(project=locked, label=old["name"])
        decided = ReviewDecision.objects.filter(project=locked, label=old["name"])
    reopened = _send_back(locked, answered, decided)
    version = _commit(
        locked,
        labels,
        operation=LabelSetOperation.SPLIT,
        data={"label": old["name"], "new_labels": [e["name"] for e in entries], "reopened": reopened},
        by=by,
        field_name="new_labels",
    )
    closed = review_items_relabeled(project=locked, operation=LabelSetOperation.SPLIT, version=version.version, by=by)
    return LabelSetChange(version=version, reopened=reopened, review_closed=closed, run=_retrain(locked, project))
