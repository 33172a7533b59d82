"""The database itself refuses states the service must never reach."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from labeling import models as m
from tests import factories as f

pytestmark = pytest.mark.django_db


def test_tests_run_on_postgresql() -> None:
    assert connection.vendor == "postgresql"


def test_second_champion_is_refused() -> None:
    project = f.ProjectFactory()
    f.ModelVersionFactory(project=project, status=m.ModelStatus.CHAMPION)
    with pytest.raises(IntegrityError), transaction.atomic():
        f.ModelVersionFactory(project=project, status=m.ModelStatus.CHAMPION)
    # Another project may have its own champion.
    f.ModelVersionFactory(status=m.ModelStatus.CHAMPION)


def test_second_active_assignment_for_a_document_is_refused() -> None:
    doc = f.DocumentFactory()
    f.AssignmentFactory(document=doc)
    with pytest.raises(IntegrityError), transaction.atomic():
        f.AssignmentFactory(document=doc)
    # Leases given back do not block a new lease; a labeled one holds its place.
    m.Assignment.objects.filter(document=doc).update(state=m.AssignmentState.RELEASED)
    f.AssignmentFactory(document=doc)
    m.Assignment.objects.filter(document=doc, state=m.AssignmentState.ACTIVE).update(state=m.AssignmentState.DONE)
    with pytest.raises(IntegrityError), transaction.atomic():
        f.AssignmentFactory(document=doc)
    f.AssignmentFactory(document=doc, slot=1)  # a second place, for a document with overlap


def test_an_assignment_takes_its_documents_project() -> None:
    doc = f.DocumentFactory()
    user = f.UserFactory()
    lease = m.Assignment.objects.create(document=doc, annotator=user, leased_until=timezone.now())
    assert lease.project_id == doc.project_id
    assert m.Assignment.objects.filter(project=doc.project).get() == lease


def test_second_prediction_for_same_document_and_model_is_refused() -> None:
    pred = f.PredictionFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        f.PredictionFactory(document=pred.document, model_version=pred.model_version)


def test_duplicate_external_id_is_refused_within_a_project_only() -> None:
    doc = f.DocumentFactory(external_id="abc")
    with pytest.raises(IntegrityError), transaction.atomic():
        f.DocumentFactory(project=doc.project, external_id="abc")
    f.DocumentFactory(external_id="abc")  # other project
    # Documents without an external id never collide.
    f.DocumentFactory(project=doc.project, external_id=None)
    f.DocumentFactory(project=doc.project, external_id=None)


def test_one_annotation_per_document_and_annotator() -> None:
    ann = f.AnnotationFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        f.AnnotationFactory(document=ann.document, annotator=ann.annotator)


def test_one_open_training_run_per_project() -> None:
    run = f.TrainingRunFactory(status=m.RunStatus.RUNNING)
    with pytest.raises(IntegrityError), transaction.atomic():
        f.TrainingRunFactory(project=run.project, status=m.RunStatus.QUEUED)
    f.TrainingRunFactory(project=run.project, status=m.RunStatus.FAILED)


def test_content_hash_detects_exact_duplicates() -> None:
    a = f.DocumentFactory(text="same words")
    b = m.Document.objects.create(project=a.project, text="same words")
    assert a.content_hash == b.content_hash == m.text_hash("same words")


@pytest.mark.parametrize(
    "labels, message",
    [
        ([{"name": "only"}], "at least 2"),
        ([{"name": "a"}, {"name": "a"}], "repeated"),
        ([{"name": "a", "key": "1"}, {"name": "b", "key": "1"}], "repeated"),
        ([{"name": "a", "key": "s"}, {"name": "b"}], "not s or u"),
        ([{"name": "has space"}, {"name": "b"}], "letters"),
        ("fresh,rotten", "list"),
    ],
)
def test_label_set_validation_names_the_problem(labels: object, message: str) -> None:
    project = f.ProjectFactory.build(labels=labels)
    with pytest.raises(ValidationError, match=message):
        project.full_clean()


def test_every_model_has_a_factory_and_admin() -> None:
    from django.contrib import admin

    for model in (m.Project, m.Document, m.Annotation, m.AnnotationRevision, m.Assignment,
                  m.ModelVersion, m.Prediction, m.TrainingRun, m.ImportJob, m.AuditEvent):
        assert admin.site.is_registered(model), model
    for factory_cls in (f.AnnotationRevisionFactory, f.ImportJobFactory, f.TrainingRunFactory):
        assert factory_cls().pk is not None


def test_admin_pages_render(admin_client) -> None:
    f.PredictionFactory()
    f.AnnotationRevisionFactory()
    for name in ("project", "document", "annotation", "assignment", "modelversion", "prediction",
                 "trainingrun", "importjob", "annotationrevision", "auditevent"):
        resp = admin_client.get(f"/admin/labeling/{name}/")
        assert resp.status_code == 200, name
