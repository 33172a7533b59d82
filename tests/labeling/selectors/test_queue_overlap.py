"""With overlap, the random part of the queue (holdout, cold start) finishes started documents first."""

from __future__ import annotations

import pytest

from labeling.models import Document
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next
from labeling.services.documents import document_bulk_create
from labeling.services.projects import project_create
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_started_document_is_served_before_fresh_ones() -> None:
    project = project_create(name="started first", labels=["a", "b"], holdout_fraction=0.0, overlap=2, seed=3)
    document_bulk_create(project=project, items=[{"text": f"doc {i}"} for i in range(200)])
    a, b, c = (UserFactory(username=name) for name in ("a", "b", "c"))
    first = assignment_next(project=project, annotator=a)
    assert first is not None
    annotation_submit(assignment=first, user=a, label="a")
    # Among 200 documents a seeded random pick would almost never return to it; b gets it next.
    second = assignment_next(project=project, annotator=b)
    assert second is not None and second.document_id == first.document_id
    annotation_submit(assignment=second, user=b, label="b")
    assert Document.objects.get(pk=first.document_id).is_labeled
    third = assignment_next(project=project, annotator=c)
    assert third is not None and third.document_id != first.document_id
