"""Who may call what: every endpoint against every role.

Requests name an unknown project / object, so an allowed caller gets past the role check and
meets a 404 (or a 200 / 400 where no id is involved) while a refused one is stopped at 401 / 403.
"""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from labeling.models import AssignmentState
from tests.labeling.api.conftest import token_client

pytestmark = pytest.mark.django_db

X = 999999
PR = f"/api/v1/projects/{X}"
ALL = {"admin", "annotator", "ingest"}
ADMIN = {"admin"}
ANNOTATE = {"admin", "annotator"}
INGEST = {"admin", "ingest"}

ENDPOINTS = [
    ("get", "/api/v1/projects/", ALL),
    ("post", "/api/v1/projects/", ADMIN),
    ("get", f"{PR}/", ALL),
    ("patch", f"{PR}/", ADMIN),
    ("get", f"{PR}/stats", ADMIN),
    ("get", f"{PR}/export?format=csv", ADMIN),
    ("post", f"{PR}/documents/", INGEST),
    ("get", f"{PR}/documents/", INGEST),
    ("get", f"{PR}/documents/{X}", INGEST),
    ("post", f"{PR}/imports/", INGEST),
    ("get", f"{PR}/imports/{X}", INGEST),
    ("post", f"{PR}/queue/next", ANNOTATE),
    ("post", f"/api/v1/assignments/{X}/renew", ANNOTATE),
    ("post", f"/api/v1/assignments/{X}/skip", ANNOTATE),
    ("post", f"/api/v1/assignments/{X}/release", ANNOTATE),
    ("post", f"/api/v1/assignments/{X}/annotation", ANNOTATE),
    ("patch", f"/api/v1/annotations/{X}", ANNOTATE),
    ("get", f"{PR}/annotations", ANNOTATE),
    ("post", f"{PR}/predict", INGEST),
    ("get", f"{PR}/models/", ALL),
    ("post", f"{PR}/models/{X}/promote", ADMIN),
    ("post", f"{PR}/models/rollback", ADMIN),
    ("get", f"{PR}/training-runs/", ALL),
    ("post", f"{PR}/training-runs/", ADMIN),
]
ROLES = ["anonymous", "nobody", "annotator", "ingest", "admin"]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method,url,allowed", ENDPOINTS, ids=[f"{m} {u}" for m, u, _ in ENDPOINTS])
def test_role_matrix(method, url, allowed, role, request) -> None:
    if role == "anonymous":
        client = APIClient()
    else:
        user = request.getfixturevalue(
            {"nobody": "nobody", "annotator": "annotator", "ingest": "ingest_user", "admin": "admin_user"}[
                role
            ]
        )
        client = token_client(user)
    multipart = url.endswith("/imports/")
    response = getattr(client, method)(
        url, {} if not multipart else {"text_col": "t"}, format="multipart" if multipart else "json"
    )
    if role in allowed:
        assert response.status_code not in (401, 403), response.content
        assert response.status_code in (200, 201, 204, 400, 404)
    else:
        assert response.status_code == (401 if role == "anonymous" else 403), response.content
        assert response.json()["error"]["code"] in ("not_authenticated", "permission_denied")


def test_session_clients_need_the_csrf_token(annotator, project, docs):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(annotator)
    refused = client.post(f"/api/v1/projects/{project.pk}/queue/next")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
    token = "a" * 32  # what the UI reads from the csrftoken cookie and echoes in X-CSRFToken
    client.cookies["csrftoken"] = token
    accepted = client.post(f"/api/v1/projects/{project.pk}/queue/next", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200


def test_admin_may_release_an_annotators_lease_but_not_label_it(
    annotator_client, admin_client, project, docs
):
    item = annotator_client.post(f"/api/v1/projects/{project.pk}/queue/next").json()
    aid = item["assignment"]["id"]
    assert (
        admin_client.post(
            f"/api/v1/assignments/{aid}/annotation", {"label": "fresh"}, format="json"
        ).status_code
        == 403
    )
    released = admin_client.post(f"/api/v1/assignments/{aid}/release")
    assert released.status_code == 200
    assert released.json()["state"] == AssignmentState.RELEASED
