"""A multi-label project with the API fixtures' users: hand-written disaster-message-like fixture rows.

The texts are written for these tests (clearly fixtures, not data); the labels are a few of the
disaster-messages data set's 35 label names.
"""

from __future__ import annotations

import pytest

from labeling import roles
from labeling.models import Project
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from tests.labeling.api.conftest import (  # noqa: F401  (fixtures)
    _fast_password_hashing,
    _fresh_throttles,
    admin_client,
    admin_user,
    annotator,
    annotator_client,
    make_user,
    other_annotator,
    other_client,
)
from tests.labeling.api.conftest import ingest_user as ingest_user  # noqa: F401

LABELS = ["water", "food", "shelter", "medical_help"]
TEXTS = [
    "FIXTURE: we have no clean water and the children are sick",
    "FIXTURE: the roof fell in, we sleep outside and need tents",
    "FIXTURE: please send rice and drinking water to the camp",
    "FIXTURE: the road to the market is open again",
    "FIXTURE: an injured man needs a doctor near the bridge",
    "FIXTURE: food ran out two days ago, we need help",
]


@pytest.fixture
def ml_project(db, annotator, other_annotator, ingest_user) -> Project:  # noqa: F811
    project = project_create(
        name="needs", labels=LABELS, task_type="multi_label", holdout_fraction=0.0, holdout_interleave=0.0
    )
    for user in (annotator, other_annotator):
        membership_ensure(project=project, user=user, role=roles.ANNOTATOR)
    membership_ensure(project=project, user=ingest_user, role=roles.INGEST)
    return project


@pytest.fixture
def ml_docs(ml_project):
    items = [{"text": text, "external_id": f"m{i}"} for i, text in enumerate(TEXTS)]
    return [doc for doc, _ in document_bulk_create(project=ml_project, items=items)]
