"""API fixtures: one user per role with a token client, a project with documents.

The ``project`` fixture makes ``ann`` and ``bob`` annotators and ``feeder`` its ingest client;
``nobody`` is a member of nothing; ``boss`` is staff (needs no membership).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from labeling import roles
from labeling.models import ModelStatus, Project
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from labeling.services.tokens import token_create
from tests.factories import ModelVersionFactory, PredictionFactory, UserFactory


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    cache.clear()  # throttle history lives in the cache; one test must not spend another's budget


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # API clients authenticate with tokens; PBKDF2's deliberate slowness only slows the fixtures.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def api_key(user) -> str:
    """One key per user for the whole test (token_create would rotate it on every call)."""
    if not hasattr(user, "_test_api_key"):
        user._test_api_key = token_create(user=user)[1]
    return user._test_api_key


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key(user)}")
    return client


@pytest.fixture
def make_user(db) -> Callable[..., object]:
    def make(username: str, *, staff: bool = False):
        return UserFactory(username=username, is_staff=staff)

    return make


@pytest.fixture
def admin_user(make_user):
    return make_user("boss", staff=True)


@pytest.fixture
def annotator(make_user):
    return make_user("ann")


@pytest.fixture
def other_annotator(make_user):
    return make_user("bob")


@pytest.fixture
def ingest_user(make_user):
    return make_user("feeder")


@pytest.fixture
def nobody(make_user):
    return make_user("nobody")


@pytest.fixture
def admin_client(admin_user) -> APIClient:
    return token_client(admin_user)


@pytest.fixture
def annotator_client(annotator) -> APIClient:
    return token_client(annotator)


@pytest.fixture
def other_client(other_annotator) -> APIClient:
    return token_client(other_annotator)


@pytest.fixture
def ingest_client(ingest_user) -> APIClient:
    return token_client(ingest_user)


@pytest.fixture
def manager(make_user):
    return make_user("mgr")


@pytest.fixture
def manager_client(manager, project) -> APIClient:
    membership_ensure(project=project, user=manager, role=roles.MANAGER)
    return token_client(manager)


@pytest.fixture
def project(db, annotator, other_annotator, ingest_user) -> Project:
    project = project_create(
        name="reviews", labels=["fresh", "rotten"], holdout_fraction=0.0, holdout_interleave=0.0
    )
    for user in (annotator, other_annotator):
        membership_ensure(project=project, user=user, role=roles.ANNOTATOR)
    membership_ensure(project=project, user=ingest_user, role=roles.INGEST)
    return project


@pytest.fixture
def docs(project):
    items = [
        {"text": f"Review number {i}: it was {'great' if i % 2 else 'dull'}.", "external_id": f"r{i}"}
        for i in range(12)
    ]
    return [doc for doc, _ in document_bulk_create(project=project, items=items)]


@pytest.fixture
def champion(project, docs):
    """A champion that scored every document; document i gets acquisition score i / 100."""
    version = ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    for i, doc in enumerate(docs):
        PredictionFactory(
            document=doc,
            model_version=version,
            acquisition_score=i / 100,
            map_x=float(i),
            map_y=0.0,
            predicted_label="fresh",
            confidence=0.6,
        )
    return version
