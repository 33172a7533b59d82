"""Labels: submit one for a lease (idempotent), edit it later (audited)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone

from labeling import roles
from labeling.models import (
    Annotation,
    AnnotationRevision,
    AnnotationSource,
    Assignment,
    AssignmentState,
    AuditAction,
    Document,
    Prediction,
    Project,
)
from labeling.selectors.models import champion_prediction
from labeling.services.answers import UNSET, answer_validate
from labeling.services.assignments import assignment_locked_for, assignment_require_live
from labeling.services.audit import audit_record
from labeling.services.dispatch import TaskName, enqueue
from labeling.services.events import Event, publish
from labeling.services.labelset import label_set_shared
from labeling.services.review import document_completed, labels_changed

MAX_DURATION_MS = 24 * 60 * 60 * 1000
# A label asks for a retrain threshold check this long after it commits; labels that follow within
# the window (one second shorter, so they commit before the check reads) share that check: without
# it, 20 annotators sent 20 check tasks a second. Beat checks every project on its own as well.
RETRAIN_CHECK_DELAY_S = 5


class AnnotationConflictError(Exception):
    """A retry that disagrees with the label already stored for this assignment."""


def label_validate(project: Project, label: object = UNSET, labels: object = UNSET) -> str:
    """The stored text of an answer (``label`` for a single-label project, ``labels`` for a multi-label one)."""
    return answer_validate(project, label=label, labels=labels)


def _event_payload(annotation: Annotation, *, project_id: int) -> dict[str, object]:
    return {
        "annotation_id": annotation.pk,
        "document_id": annotation.document_id,
        "project_id": project_id,
        "label": annotation.label,
        "annotator_id": annotation.annotator_id,
    }


def _request_retrain_check(project_id: int) -> None:
    enqueue(
        TaskName.CHECK_RETRAIN,
        args=(project_id,),
        countdown=RETRAIN_CHECK_DELAY_S,
        coalesce_s=RETRAIN_CHECK_DELAY_S - 1,
    )


def annotation_submit(
    *,
    assignment: Assignment,
    user: AbstractBaseUser,
    label: object = UNSET,
    labels: object = UNSET,
    duration_ms: int | None = None,
    source: str = AnnotationSource.API,
) -> tuple[Annotation, bool]:
    """Label the leased document; returns (annotation, created). A retry returns the stored one.

    ``label`` (one name) answers a single-label project, ``labels`` (a list of names) a multi-label one.
    """
    if duration_ms is not None and not (0 <= duration_ms <= MAX_DURATION_MS):
        raise ValidationError({"duration_ms": f"must be between 0 and {MAX_DURATION_MS}"})
    with transaction.atomic():
        label_set, version = label_set_shared(project_id=assignment.project_id)
        locked = assignment_locked_for(assignment, user, admin_may=False, lock_document=True)
        project = locked.document.project
        project.labels, project.label_set_version = label_set, version
        label = label_validate(project, label, labels)
        if locked.state == AssignmentState.DONE:
            existing = Annotation.objects.filter(assignment=locked).first()
            if existing is not None:
                if existing.label != label:
                    raise AnnotationConflictError(
                        f"this assignment was already labeled {existing.label!r}; "
                        f"edit it with PATCH /api/v1/annotations/{existing.pk}"
                    )
                return existing, False
        assignment_require_live(locked)
        document = locked.document  # locked with the assignment: the queue's SKIP LOCKED passes it by
        prediction = champion_prediction(document_id=document.pk, project_id=document.project_id)
        now = timezone.now()
        # The document row is locked and only this function creates annotations, so a plain read
        # then insert cannot race (get_or_create would add a savepoint round trip pair per label).
        annotation = Annotation.objects.filter(document=document, annotator=user).first()
        created = annotation is None
        if annotation is None:
            annotation = Annotation.objects.create(
                document=document,
                project_id=document.project_id,
                annotator=user,
                label=label,
                assignment=locked,
                duration_ms=duration_ms,
                source=source,
                model_version=prediction.model_version if prediction else None,
                predicted_label=prediction.predicted_label if prediction else "",
                predicted_confidence=prediction.confidence if prediction else None,
                label_set_version=project.label_set_version,
                created_at=now,
                updated_at=now,
            )
        elif annotation.label != label:
            # Served again after its label was split (labeling.services.labelset): the new answer
            # replaces the old one, which stays in the revision history.
            AnnotationRevision.objects.create(
                annotation=annotation, previous_label=annotation.label, new_label=label, changed_by=user
            )
            annotation.label, annotation.assignment, annotation.updated_at = label, locked, now
            annotation.label_set_version = project.label_set_version
            annotation.save(update_fields=["label", "assignment", "updated_at", "label_set_version"])
        locked.state = AssignmentState.DONE
        locked.finished_at = now
        locked.save(update_fields=["state", "finished_at"])
        # The document closes once it has its labels (one without overlap: this one, nothing to read);
        # with overlap one read gives both the count and the labels the review check needs. Answers of a
        # label no longer in the set (split, retired) do not fill a place.
        space = project.label_space
        given = [label] if document.labels_required <= 1 else [
            answer
            for answer in Annotation.objects.filter(document=document).order_by("id").values_list("label", flat=True)
            if space.is_current(answer)
        ]
        if len(given) >= document.labels_required and not document.is_labeled:
            Document.objects.filter(pk=document.pk).update(is_labeled=True)
            Prediction.objects.filter(document=document, in_queue=True).update(in_queue=False)
            document.is_labeled = True
            document_completed(project=project, document=document, labels=given)
        _request_retrain_check(project.id)
        if created:
            publish(Event.ANNOTATION_CREATED, _event_payload(annotation, project_id=project.id), project=project)
    return annotation, created


def annotation_update(
    *, annotation: Annotation, user: AbstractBaseUser, label: object = UNSET, labels: object = UNSET
) -> Annotation:
    """Change a label given earlier (its annotator or an admin); every change leaves a revision."""
    with transaction.atomic():
        label_set, version = label_set_shared(document_id=annotation.document_id)
        locked = Annotation.objects.select_for_update().select_related("document__project").get(pk=annotation.pk)
        locked.document.project.labels, locked.document.project.label_set_version = label_set, version
        if locked.annotator_id != user.pk and not roles.is_admin(user):
            raise PermissionDenied("only the annotator who gave this label, or an admin, may change it")
        label = label_validate(locked.document.project, label, labels)
        if label != locked.label:
            previous = locked.label
            AnnotationRevision.objects.create(
                annotation=locked, previous_label=previous, new_label=label, changed_by=user
            )
            locked.label = label
            locked.updated_at = timezone.now()
            locked.label_set_version = locked.document.project.label_set_version
            locked.save(update_fields=["label", "updated_at", "label_set_version"])
            labels_changed(project=locked.document.project, document=locked.document)
            _request_retrain_check(locked.document.project_id)
            # A first label is not an edit: only this path (a change) writes an audit event.
            audit_record(
                actor=user, action=AuditAction.ANNOTATION_CHANGED, project=locked.document.project, target=locked,
                data={"document": locked.document_id, "annotator_id": locked.annotator_id,
                      "old_label": previous, "new_label": label},
            )
            publish(
                Event.ANNOTATION_CHANGED,
                {**_event_payload(locked, project_id=locked.document.project_id), "previous_label": previous},
                project=locked.document.project,
            )
    return locked
