"""Label events: published by the annotation service, delivered to listeners only after commit."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from labeling.services import events
from labeling.services.annotations import annotation_submit, annotation_update
from labeling.services.events import Event
from tests.factories import AssignmentFactory, DocumentFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def heard(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Event, dict[str, Any]]]:
    got: list[tuple[Event, dict[str, Any]]] = []
    monkeypatch.setattr(events, "LISTENERS", [lambda event, payload: got.append((event, payload))])
    return got


def test_a_new_label_and_its_edit_are_announced_after_commit(heard, django_capture_on_commit_callbacks):
    lease = AssignmentFactory(document=DocumentFactory())
    with django_capture_on_commit_callbacks(execute=True):
        annotation, _ = annotation_submit(assignment=lease, user=lease.annotator, label="fresh")
        annotation_submit(assignment=lease, user=lease.annotator, label="fresh")  # a retry: no new event
        annotation_update(annotation=annotation, user=lease.annotator, label="rotten")
        annotation_update(annotation=annotation, user=lease.annotator, label="rotten")  # no change: no event
    base = {
        "annotation_id": annotation.pk,
        "document_id": lease.document_id,
        "project_id": lease.document.project_id,
        "annotator_id": lease.annotator_id,
    }
    assert heard == [
        (Event.ANNOTATION_CREATED, {**base, "label": "fresh"}),
        (Event.ANNOTATION_CHANGED, {**base, "label": "rotten", "previous_label": "fresh"}),
    ]


def test_a_rolled_back_label_is_never_announced(heard, django_capture_on_commit_callbacks):
    lease = AssignmentFactory(document=DocumentFactory())
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            annotation_submit(assignment=lease, user=lease.annotator, label="fresh")
            raise RuntimeError("the caller's transaction fails after the label")
    assert heard == []
