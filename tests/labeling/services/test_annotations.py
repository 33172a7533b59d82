"""Labels in the service: validation, idempotent retries, audited edits, the retrain check."""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from labeling.models import Annotation, AnnotationRevision, ModelStatus
from labeling.services.annotations import AnnotationConflictError, annotation_submit, annotation_update
from tests.factories import (
    AssignmentFactory,
    DocumentFactory,
    ModelVersionFactory,
    PredictionFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def lease():
    return AssignmentFactory(document=DocumentFactory())


def test_a_label_outside_the_set_is_refused(lease):
    with pytest.raises(ValidationError) as info:
        annotation_submit(assignment=lease, user=lease.annotator, label="maybe")
    assert "label" in info.value.message_dict
    assert not Annotation.objects.exists()


def test_submit_snapshots_the_champion_and_enqueues_the_retrain_check(
    lease, django_capture_on_commit_callbacks
):
    champion = ModelVersionFactory(project=lease.document.project, version=3, status=ModelStatus.CHAMPION)
    PredictionFactory(
        document=lease.document, model_version=champion, predicted_label="rotten", confidence=0.8
    )
    with django_capture_on_commit_callbacks() as sent:
        annotation, created = annotation_submit(
            assignment=lease, user=lease.annotator, label="fresh", duration_ms=900
        )
    assert created and len(sent) == 1
    assert (annotation.model_version, annotation.predicted_label, annotation.predicted_confidence) == (
        champion,
        "rotten",
        0.8,
    )
    assert not lease.document.predictions.filter(in_queue=True).exists()  # out of the queue index
    again, created_again = annotation_submit(assignment=lease, user=lease.annotator, label="fresh")
    assert (again.pk, created_again) == (annotation.pk, False)
    with pytest.raises(AnnotationConflictError):
        annotation_submit(assignment=lease, user=lease.annotator, label="rotten")


def test_edits_are_audited_and_limited_to_the_annotator_or_an_admin(lease):
    annotation, _ = annotation_submit(assignment=lease, user=lease.annotator, label="fresh")
    with pytest.raises(PermissionDenied):
        annotation_update(annotation=annotation, user=UserFactory(), label="rotten")
    annotation_update(annotation=annotation, user=lease.annotator, label="rotten")
    annotation_update(annotation=annotation, user=lease.annotator, label="rotten")  # no change, no revision
    admin = UserFactory(is_staff=True)
    annotation_update(annotation=annotation, user=admin, label="fresh")
    revisions = list(AnnotationRevision.objects.values_list("previous_label", "new_label", "changed_by"))
    assert revisions == [("fresh", "rotten", lease.annotator.pk), ("rotten", "fresh", admin.pk)]
    assert Annotation.objects.get().label == "fresh"
