"""Property-based requests generated from the published OpenAPI schema (schemathesis 4): never a 5xx.

Bounded: a few key operations, a couple of dozen examples each, derandomized so a failure repeats.
Path ids point at real rows most of the time, so the bodies reach the services, not just the 404s.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labeling import roles
from labeling.models import Annotation, Assignment, Document
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from tests.factories import AssignmentFactory, UserFactory
from tests.labeling.api.conftest import token_client

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OPERATIONS = [
    ("/api/v1/projects/{project_id}/documents/", "POST", "ingest"),
    ("/api/v1/projects/{project_id}/documents/", "GET", "ingest"),
    ("/api/v1/projects/{project_id}/predict", "POST", "ingest"),
    ("/api/v1/projects/", "POST", "admin"),
    ("/api/v1/projects/{project_id}/", "PATCH", "admin"),
    ("/api/v1/projects/{project_id}/queue/next", "POST", "annotator"),
    ("/api/v1/assignments/{assignment_id}/annotation", "POST", "annotator"),
    ("/api/v1/annotations/{annotation_id}", "PATCH", "annotator"),
    ("/api/v1/projects/{project_id}/audit/", "GET", "admin"),
    ("/api/v1/audit/", "GET", "admin"),
    ("/api/v1/projects/{project_id}/guidelines", "PUT", "admin"),
    ("/api/v1/projects/{project_id}/documents/{document_id}/flags", "POST", "admin"),
]
EXAMPLES = 20


def _token(user) -> str:
    return token_client(user)._credentials["HTTP_AUTHORIZATION"]


@pytest.mark.parametrize("path,method,role", OPERATIONS, ids=[f"{m} {p}" for p, m, _ in OPERATIONS])
def test_generated_requests_never_get_a_server_error(path, method, role) -> None:
    app = get_wsgi_application()
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", app)
    project = project_create(name="fuzz", labels=["fresh", "rotten"])
    docs = [d for d, _ in document_bulk_create(project=project, items=[{"text": f"t{i}"} for i in range(30)])]
    users = {
        "admin": UserFactory(username="fz-admin", is_staff=True),
        "ingest": UserFactory(username="fz-ingest"),
        "annotator": UserFactory(username="fz-ann"),
    }
    membership_ensure(project=project, user=users["ingest"], role=roles.INGEST)
    membership_ensure(project=project, user=users["annotator"], role=roles.ANNOTATOR)
    auth = {"Authorization": _token(users[role])}
    annotation = Annotation.objects.create(document=docs[-1], annotator=users["annotator"], label="fresh")
    operation = schema[path][method]
    seen: list[int] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), real_ids=st.booleans())
    def run(case, real_ids: bool) -> None:
        if real_ids and case.path_parameters:
            if "project_id" in case.path_parameters:
                case.path_parameters["project_id"] = project.pk
            if "assignment_id" in case.path_parameters:
                free = (
                    Document.objects.filter(project=project, is_labeled=False)
                    .exclude(assignments__state="active")
                    .first()
                )
                lease = (
                    AssignmentFactory(document=free, annotator=users["annotator"])
                    if free
                    else Assignment.objects.first()
                )
                case.path_parameters["assignment_id"] = lease.pk
            if "annotation_id" in case.path_parameters:
                case.path_parameters["annotation_id"] = annotation.pk
            if "document_id" in case.path_parameters:
                case.path_parameters["document_id"] = docs[0].pk
        response = case.call(app=app, headers=auth)
        seen.append(response.status_code)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:300]}"
        )
        if response.status_code >= 400:
            assert set(response.json()["error"]) == {"code", "message", "fields"}

    run()
    # The generated requests got past authentication and routing, into validation and the services.
    assert any(code not in (401, 403, 404) for code in seen), seen


MANAGER_EXAMPLES = 6


def test_every_operation_with_a_manager_token_never_gets_a_server_error() -> None:
    """Every operation the schema publishes, as a manager of a real project: a few examples each."""
    app = get_wsgi_application()
    schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", app)
    project = project_create(name="fuzz-all", labels=["fresh", "rotten"])
    docs = [d for d, _ in document_bulk_create(project=project, items=[{"text": f"t{i}"} for i in range(20)])]
    manager = UserFactory(username="fz-manager")
    membership_ensure(project=project, user=manager, role=roles.MANAGER)
    annotation = Annotation.objects.create(document=docs[-1], annotator=manager, label="fresh")
    auth = {"Authorization": _token(manager)}
    real = {"project_id": project.pk, "annotation_id": annotation.pk, "user_id": manager.pk,
            "document_id": docs[0].pk}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25  # every operation, not a chosen few
    failures: list[str] = []

    for operation in operations:

        @settings(max_examples=MANAGER_EXAMPLES, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), real_ids=st.booleans())
        def run(case, real_ids: bool) -> None:
            if real_ids and case.path_parameters:
                for name, value in real.items():
                    if name in case.path_parameters:
                        case.path_parameters[name] = value
                if "assignment_id" in case.path_parameters:
                    free = Document.objects.filter(project=project, is_labeled=False).exclude(
                        assignments__state="active").first()
                    lease = AssignmentFactory(document=free, annotator=manager) if free else Assignment.objects.first()
                    case.path_parameters["assignment_id"] = lease.pk
            response = case.call(app=app, headers=auth)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")

        run()
    assert failures == [], "\n".join(failures)
