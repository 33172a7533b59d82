"""One imported row checked and turned into document fields, and the labels rows carry.

What the label column becomes (``labels_as``):

- ``gold`` (the default): ``Document.gold_label`` only (for replay and evaluation); never an
  annotation, never shown to annotators. A label outside the label set rejects its row.
- ``training``: every label is checked first, in a pass over the whole file; one label outside the
  label set fails the import before anything is written (``ImportLabelError`` names the row and the
  column). A new pool document gets the label as an ``Annotation`` with source ``import``, by the
  service account ``IMPORT_ANNOTATOR`` or, with ``annotator_col``, by the member that row names
  (see below), recording the import job and the row's ``source_col``: it
  trains models, counts towards consensus, and closes the document in the queue like any label
  (with overlap it is one of the document's labels). A new **holdout** document's label goes to
  ``gold_label`` instead: the holdout stays labeled blind by this project's annotators, so its
  evaluation never takes an outside label for an honest one. A document already stored is never
  relabeled (a re-import counts its rows as duplicates). Once training labels are stored the
  project's retrain rule is checked at once: a labeled file in an empty project queues its first run.

Who gave each label (``annotator_col``, ``labels_as=training`` only): a column holding, per row, the
username of the project member who gave that row's label. It is checked with the labels, before
anything is written: a username that is not an active member of the project who labels (manager,
reviewer, annotator) fails the import naming the row and the column. A row whose cell is empty is
credited to ``IMPORT_ANNOTATOR``, as every row is without the column. The label then counts as that
member's own (their queue skips the document, agreement and their statistics count it); a holdout
row's label stays gold, whoever gave it.

Pre-annotations (``prediction_col``, optional ``prediction_score_col``): an external model's label
for a row, stored on the new document as ``suggested_label`` / ``suggested_score``. The labeling page
shows it as a suggestion (never on a blind holdout item); it is never trained on: an annotator who
accepts it gives that label as their own. Predicted labels and scores are checked first like
training labels: one outside the label set (or a score that is not a number in 0-1) stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from labeling import roles
from labeling.labelspace import LabelSpace
from labeling.models import (
    Annotation,
    AnnotationSource,
    AuditAction,
    Document,
    ImportJob,
    LabelsAs,
    Project,
    ProjectMembership,
    RunTrigger,
    Split,
)
from labeling.services import documents
from labeling.services.audit import audit_record
from labeling.services.import_readers import ERROR_KEY, ImportFileError
from labeling.services.training.triggers import project_check_retrain

#: The account imported training labels are given by (inactive: it never signs in).
IMPORT_ANNOTATOR = "alabel-import"


class ImportLabelError(ImportFileError):
    """A training label, predicted label or score that cannot be stored: the import stores nothing."""

    def __init__(self, *, row: int, column: str, problem: str) -> None:
        self.row, self.column = row, column
        super().__init__(f"row {row}: {column!r} {problem}; nothing was imported")


def import_annotator() -> Any:
    """The service account that gives imported training labels, created on first use."""
    from django.contrib.auth import get_user_model

    user, created = get_user_model().objects.get_or_create(username=IMPORT_ANNOTATOR, defaults={"is_active": False})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


# ---------------------------------------------------------------------------------------------
# Checks before anything is written


def labels_as_check(labels_as: str, label_col: str | None, annotator_col: str | None = None) -> None:
    if labels_as not in LabelsAs.values:
        raise ImportFileError(f"labels_as must be one of {', '.join(LabelsAs.values)}, not {labels_as!r}")
    if labels_as == LabelsAs.TRAINING and not label_col:
        raise ImportFileError("labels_as=training needs a label column (label_col)")
    if annotator_col and labels_as != LabelsAs.TRAINING:
        raise ImportFileError("annotator_col only with labels_as=training (gold labels have no annotator)")


def project_labelers(project: Project) -> dict[str, int]:
    """Username -> user id of the project's active members who may give labels."""
    return dict(
        ProjectMembership.objects.filter(project=project, role__in=roles.ANNOTATE, user__is_active=True).values_list(
            "user__username", "user_id"
        )
    )


def _not_a_labeler(project: Project, username: str) -> str:
    """Why ``username`` cannot be credited with a label in ``project`` (it is not in ``project_labelers``)."""
    member = ProjectMembership.objects.filter(project=project, user__username=username).select_related("user").first()
    if member is None:
        return f"is {username!r}, who is not a member of this project"
    if not member.user.is_active:
        return f"is {username!r}, whose account is deactivated"
    return f"is {username!r}, a member with role {member.role}, which does not label"


def columns_to_check(labels_as: str, label_col: str | None, prediction_col: str | None) -> list[str]:
    """The columns to read through before writing: training labels and predicted labels."""
    cols = [label_col] if labels_as == LabelsAs.TRAINING and label_col else []
    return cols + ([prediction_col] if prediction_col else [])


def label_text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def label_score(value: Any) -> float | None:
    """A score in [0, 1], None when empty; ``ValueError`` otherwise."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    score = float(value)
    if not 0.0 <= score <= 1.0:  # NaN fails too
        raise ValueError(score)
    return score


def rows_check(
    *,
    project: Project,
    rows: Iterable[dict[str, Any]],
    label_cols: list[str],
    score_col: str | None = None,
    annotator_col: str | None = None,
) -> None:
    """Every non-empty value of ``label_cols`` is in the label set, every score a number in 0-1, every
    annotator a member of the project who labels.

    Else ``ImportLabelError`` naming the first bad row and its column: read before anything is written.
    """
    space = project.label_space
    labelers = project_labelers(project) if annotator_col else {}
    for row, raw in enumerate(rows, start=1):
        if not isinstance(raw, dict):
            continue
        for column in label_cols:
            try:  # one name, or a multi-label set (a list, or names joined by ","): the label space says
                space.answer_from_cell(raw.get(column))
            except ValueError as problem:
                known = ", ".join(space.names)
                raise ImportLabelError(
                    row=row, column=column, problem=f"is not valid: {problem} (labels: {known})"
                ) from None
        if score_col:
            try:
                label_score(raw.get(score_col))
            except (TypeError, ValueError):
                raise ImportLabelError(
                    row=row, column=score_col, problem=f"is {raw.get(score_col)!r}, not a number from 0 to 1"
                ) from None
        if annotator_col:
            username = label_text(raw.get(annotator_col))
            if username and username not in labelers:
                raise ImportLabelError(row=row, column=annotator_col, problem=_not_a_labeler(project, username))


# ---------------------------------------------------------------------------------------------
# One row


@dataclass(frozen=True)
class RowColumns:
    """Which columns of a row hold what (``None``: the file has no such column)."""

    text: str = "text"
    label: str | None = None
    external_id: str | None = None
    source: str | None = None
    annotator: str | None = None
    prediction: str | None = None
    prediction_score: str | None = None


def row_clean(raw: dict[str, Any], *, row: int, cols: RowColumns, space: LabelSpace) -> dict[str, Any] | str:
    """The document fields for one row, or the reason it is rejected."""
    if ERROR_KEY in raw:
        return str(raw[ERROR_KEY])
    if cols.text not in raw:
        return f"missing {cols.text!r}"
    value = raw[cols.text]
    text = "" if value is None else str(value)
    # The same checks the bulk endpoint applies (empty, NUL, too long ...), one reason per row.
    problem = documents.text_problem(text)
    if problem is not None:
        return f"text {problem}"
    item: dict[str, Any] = {"text": text, "_row": row}
    if cols.external_id:
        ext = raw.get(cols.external_id)
        ext = None if ext is None else str(ext).strip()
        if ext:
            problem = documents.text_problem(ext, max_chars=documents.MAX_EXTERNAL_ID_CHARS)
            if problem is None and len(ext) > documents.MAX_EXTERNAL_ID_CHARS:
                problem = f"must be at most {documents.MAX_EXTERNAL_ID_CHARS} characters"
            if problem is not None:
                return f"external id {problem}"
            item["external_id"] = ext
    if cols.label:
        try:
            gold = space.answer_from_cell(raw.get(cols.label))
        except ValueError as problem:
            return f"label {problem}"
        if gold is not None:
            item["gold_label"] = gold
            if cols.source and raw.get(cols.source) is not None:
                item["_source"] = str(raw[cols.source]).strip()[:200]
            if cols.annotator and (username := label_text(raw.get(cols.annotator))):
                item["_annotator"] = username  # checked before the import began (``rows_check``)
    if cols.prediction:
        suggested = space.answer_from_cell(raw.get(cols.prediction))  # checked before the import (``rows_check``)
        if suggested is not None:
            score = label_score(raw.get(cols.prediction_score)) if cols.prediction_score else None
            item["_suggested"] = (suggested, score)
    return item


# ---------------------------------------------------------------------------------------------
# Labels beside the stored documents


@dataclass
class TrainingLabels:
    """Where a training import's labels go: who gives them and which job brought them."""

    annotator: Any  # the service account: rows that name no annotator
    job: ImportJob | None
    annotators: dict[str, int] = field(default_factory=dict)  # username -> user id, with annotator_col


def training_labels(
    kept: list[dict[str, Any]], results: list[tuple[Document, bool]], labels: TrainingLabels
) -> tuple[list[Annotation], list[Document]]:
    """Annotations for new pool documents; new holdout documents keep their label as gold (labeled blind)."""
    annotations: list[Annotation] = []
    gold: list[Document] = []
    for item, (doc, was_created) in zip(kept, results, strict=True):
        if not (was_created and item.get("gold_label") is not None):  # "" is a multi-label empty set
            continue
        if doc.split == Split.HOLDOUT:
            doc.gold_label = item["gold_label"]
            gold.append(doc)
            continue
        username = item.get("_annotator")
        annotations.append(
            Annotation(
                document=doc,
                project_id=doc.project_id,
                annotator_id=labels.annotators[username] if username else labels.annotator.pk,
                label=item["gold_label"],
                source=AnnotationSource.IMPORT,
                import_job=labels.job,
                import_source=item.get("_source", ""),
            )
        )
    return annotations, gold


def gold_labels(kept: list[dict[str, Any]], results: list[tuple[Document, bool]]) -> list[Document]:
    """New documents given their row's label as ``gold_label`` (``labels_as=gold``)."""
    gold = []
    for item, (doc, was_created) in zip(kept, results, strict=True):
        if was_created and item.get("gold_label") is not None:
            doc.gold_label = item["gold_label"]
            gold.append(doc)
    return gold


def suggestions(kept: list[dict[str, Any]], results: list[tuple[Document, bool]]) -> list[Document]:
    """New documents given their row's pre-annotation (never trained on)."""
    suggested = []
    for item, (doc, was_created) in zip(kept, results, strict=True):
        if was_created and "_suggested" in item:
            doc.suggested_label, doc.suggested_score = item["_suggested"]
            suggested.append(doc)
    return suggested


def labels_imported(
    *,
    project: Project,
    stored: int,
    documents_imported: int,
    job: ImportJob | None,
    actor: Any,
    label_col: str | None,
    annotator_col: str | None = None,
) -> None:
    """Audit the stored training labels, then check the retrain rule (a first model, at once).

    Labels are written chunk by chunk (a resumable job), so the record follows the last chunk; a job
    resumed after its worker died counts every label it stored, not only this attempt's.
    """
    labels = Annotation.objects.filter(import_job=job).count() if job is not None else stored
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=AuditAction.LABELS_IMPORTED,
            project=project,
            target=job,
            data={
                "import_job": job.pk if job else None,
                "labels": labels,
                "label_col": label_col,
                "annotator_col": annotator_col,
                "documents": documents_imported,
            },
        )
    project_check_retrain(project_id=project.pk, trigger=RunTrigger.THRESHOLD)
