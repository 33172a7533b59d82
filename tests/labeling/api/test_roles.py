"""Who may call what: every API endpoint and UI page, read from the URL resolver, against every role.

The endpoints come from Django's resolver, so a new one fails ``test_every_endpoint_has_an_expectation``
until EXPECTED says who may call it. Each request names real objects of the project (a document, an
import, a model, the caller's own lease and label, a member to re-role or remove), so an allowed caller
must not meet 401 / 403 / 404; a 400 (empty body), 204 or 409 (no model, nothing to roll back) is
"allowed". The rules (docs/API.md, "Roles"): anonymous -> 401 (API and UI JSON) or the sign-in page;
a non-member of the project (here: the manager of another project) -> 404; a member whose role lacks
the operation -> 403; staff pass everything.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from labeling import roles
from labeling.models import (
    AssignmentState,
    ModelStatus,
    ReviewItem,
    ReviewReason,
    WebhookDelivery,
    WebhookSubscription,
)
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from tests import factories as f
from tests.labeling.api.conftest import token_client

pytestmark = pytest.mark.django_db

STAFF, MANAGER, REVIEWER, ANNOTATOR, INGEST = "staff", "manager", "reviewer", "annotator", "ingest"
OUTSIDER, ANONYMOUS = "outsider", "anonymous"  # outsider: manager of another project only
CALLERS = (STAFF, MANAGER, REVIEWER, ANNOTATOR, INGEST, OUTSIDER, ANONYMOUS)

AUTHENTICATED = frozenset({STAFF, MANAGER, REVIEWER, ANNOTATOR, INGEST, OUTSIDER})
MEMBERS = frozenset({STAFF, MANAGER, REVIEWER, ANNOTATOR, INGEST})
ANNOTATE = frozenset({STAFF, MANAGER, REVIEWER, ANNOTATOR})
FEED = frozenset({STAFF, MANAGER, INGEST})
MANAGE = frozenset({STAFF, MANAGER})
REVIEW = frozenset({STAFF, MANAGER, REVIEWER})
ONLY_STAFF = frozenset({STAFF})
NOBODY: frozenset[str] = frozenset()

# Public or outside the service's roles: never project data. Django's admin site checks staff itself.
PUBLIC = {"healthz", "readyz", "api-schema", "api-docs", "api-docs-asset", "ui:login", "ui:logout", "json_not_found",
          "ui:sso-start", "ui:sso-callback"}
OUT_OF_SCOPE_PREFIXES = ("admin/",)

# (method, URL name) -> who may call it. Project-scoped unless listed in UNSCOPED.
EXPECTED: dict[tuple[str, str], frozenset[str]] = {
    ("get", "api-projects"): AUTHENTICATED,
    ("post", "api-projects"): ONLY_STAFF,
    ("get", "api-project"): MEMBERS,
    ("patch", "api-project"): MANAGE,
    ("get", "api-project-stats"): MANAGE,
    ("get", "api-project-export"): MANAGE,
    ("get", "api-labelset"): MEMBERS,
    ("post", "api-labelset-add"): MANAGE,
    ("post", "api-labelset-rename"): MANAGE,
    ("post", "api-labelset-retire"): MANAGE,
    ("post", "api-labelset-merge"): MANAGE,
    ("post", "api-labelset-split"): MANAGE,
    ("get", "api-guidelines"): MEMBERS,
    ("put", "api-guidelines"): MANAGE,
    ("post", "api-document-flag"): ANNOTATE,
    ("get", "api-flags"): REVIEW,
    ("get", "api-members"): MANAGE,
    ("post", "api-members"): MANAGE,
    ("get", "api-member-changes"): MANAGE,
    ("patch", "api-member"): MANAGE,
    ("get", "api-project-audit"): MANAGE,
    ("get", "api-audit"): ONLY_STAFF,
    ("delete", "api-member"): MANAGE,
    ("get", "api-documents"): FEED,
    ("post", "api-documents"): FEED,
    ("get", "api-document"): FEED,
    ("post", "api-imports"): FEED,
    ("get", "api-import"): FEED,
    ("post", "api-queue-next"): ANNOTATE,
    ("post", "api-renew"): ANNOTATE,
    ("post", "api-skip"): ANNOTATE,
    ("post", "api-release"): ANNOTATE,
    ("post", "api-annotate"): ANNOTATE,
    ("patch", "api-annotation"): ANNOTATE,
    ("get", "api-annotations"): ANNOTATE,
    ("post", "api-predict"): FEED,
    ("get", "api-models"): MEMBERS,
    ("post", "api-model-promote"): MANAGE,
    ("post", "api-model-rollback"): MANAGE,
    ("get", "api-training-runs"): MEMBERS,
    ("get", "api-project-agreement"): REVIEW,
    ("get", "api-project-quality"): MANAGE,
    ("post", "api-review-next"): REVIEW,
    ("get", "api-review-items"): REVIEW,
    ("get", "api-review-item"): REVIEW,
    ("post", "api-review-decide"): REVIEW,
    ("post", "api-review-comment"): REVIEW,
    ("post", "api-review-release"): REVIEW,
    ("post", "api-review-renew"): REVIEW,
    ("post", "api-training-runs"): MANAGE,
    ("get", "api-webhooks"): MANAGE,
    ("post", "api-webhooks"): MANAGE,
    ("get", "api-webhook"): MANAGE,
    ("patch", "api-webhook"): MANAGE,
    ("delete", "api-webhook"): MANAGE,
    ("post", "api-webhook-ping"): MANAGE,
    ("get", "api-webhook-deliveries"): MANAGE,
    ("post", "api-webhook-redeliver"): MANAGE,
    ("get", "ui:project-list"): AUTHENTICATED,
    ("get", "ui:label"): ANNOTATE,
    ("get", "ui:review"): REVIEW,
    ("get", "ui:dashboard"): ANNOTATE,
    ("get", "ui:document"): ANNOTATE,
    ("get", "ui:members"): MANAGE,
    ("post", "ui:members"): MANAGE,
    ("get", "ui:labelset"): MANAGE,
    ("post", "ui:labelset"): MANAGE,
    ("get", "ui:progress-json"): ANNOTATE,
    ("get", "ui:dashboard-json"): ANNOTATE,
    ("get", "ui:attributions-json"): ANNOTATE,
    ("get", "metrics"): NOBODY,
}
UNSCOPED = {"api-projects", "api-audit", "ui:project-list"}
# Opened by a credential of their own, never by a role's session or API key: /metrics takes only
# `Bearer <METRICS_TOKEN>` and, with METRICS_TOKEN unset (as here), is 404 for every caller
# (tests/labeling/api/test_metrics_api.py covers the token).
OWN_CREDENTIAL = {"metrics"}
# Function views (the UI) do not say their methods; DRF views do, and every one must be listed.
FUNCTION_VIEW_METHODS = {"ui:members": ("get", "post"), "ui:labelset": ("get", "post")}


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "") -> list[tuple[str, str, Any]]:
    out = []
    for p in patterns:
        route = prefix + str(p.pattern)
        if isinstance(p, URLResolver):
            ns = f"{p.namespace}:" if p.namespace else namespace
            out += _walk(p.url_patterns, route, ns)
        elif isinstance(p, URLPattern):
            name = f"{namespace}{p.name}" if p.name else getattr(p.callback, "__name__", route)
            out.append((route, name, p.callback))
    return out


def resolver_endpoints() -> list[tuple[str, str]]:
    """Every (method, URL name) the URLconf serves, outside PUBLIC and the admin site."""
    found = []
    for route, name, callback in _walk(get_resolver().url_patterns):
        if name in PUBLIC or route.startswith(OUT_OF_SCOPE_PREFIXES):
            continue
        cls = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
        if cls is not None:
            methods = [m for m in ("get", "post", "put", "patch", "delete") if hasattr(cls, m)]
        else:
            methods = list(FUNCTION_VIEW_METHODS.get(name, ("get",)))
        found += [(m, name) for m in methods]
    return sorted(set(found))


def test_every_endpoint_has_an_expectation() -> None:
    served = set(resolver_endpoints())
    assert served - set(EXPECTED) == set(), "new endpoints: say who may call them in EXPECTED"
    assert set(EXPECTED) - served == set(), "EXPECTED names endpoints the URLconf no longer serves"


@pytest.fixture
def world(db) -> dict[str, Any]:
    """A project with a member of each role, its objects, and a second project for the outsider."""
    project = project_create(name="scoped", labels=["fresh", "rotten"], holdout_fraction=0.0)
    other = project_create(name="elsewhere", labels=["a", "b"])
    users = {STAFF: f.UserFactory(username="staff", is_staff=True)}
    for role in (MANAGER, REVIEWER, ANNOTATOR, INGEST):
        users[role] = f.UserFactory(username=role)
        membership_ensure(project=project, user=users[role], role=role)
    users[OUTSIDER] = f.UserFactory(username="outsider")
    membership_ensure(project=other, user=users[OUTSIDER], role=roles.MANAGER)
    docs = [f.DocumentFactory(project=project) for _ in range(3 + 2 * len(CALLERS))]
    champion = f.ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    f.PredictionFactory(document=docs[0], model_version=champion, attributions=[["good", 0.5]])
    return {
        "project": project,
        "users": users,
        "docs": docs,
        "job": f.ImportJobFactory(project=project),
        "candidate": f.ModelVersionFactory(project=project, version=2, status=ModelStatus.CANDIDATE),
        "review_item": ReviewItem.objects.create(project=project, document=docs[1], reason=ReviewReason.AUDIT),
    }


def _owned(world: dict[str, Any], caller: str) -> tuple[int, int]:
    """The caller's own lease and label (a member who cannot annotate gets the annotator's)."""
    users, docs = world["users"], world["docs"]
    owner = users[caller] if caller in ANNOTATE else users[ANNOTATOR]
    i = 3 + 2 * CALLERS.index(caller)
    assignment = f.AssignmentFactory(document=docs[i], annotator=owner, state=AssignmentState.ACTIVE)
    annotation = f.AnnotationFactory(document=docs[i + 1], annotator=owner)
    return assignment.pk, annotation.pk


def _kwargs(name: str, world: dict[str, Any], caller: str) -> dict[str, int]:
    project = world["project"]
    assignment_id, annotation_id = _owned(world, caller)
    victim = f.UserFactory(username=f"victim-of-{caller}")
    membership_ensure(project=project, user=victim, role=roles.ANNOTATOR)
    webhook = WebhookSubscription.objects.create(project=project, url="http://127.0.0.1:9/", events=["ping"])
    delivery = WebhookDelivery.objects.create(subscription=webhook, event_id=uuid.uuid4(), event="ping")
    values = {
        "project_id": project.pk, "pk": project.pk, "document_id": world["docs"][0].pk,
        "doc_id": world["docs"][0].pk, "job_id": world["job"].pk, "model_id": world["candidate"].pk,
        "assignment_id": assignment_id, "annotation_id": annotation_id, "user_id": victim.pk,
        "item_id": world["review_item"].pk, "webhook_id": webhook.pk, "delivery_id": delivery.pk,
    }
    route = next(r for r, n, _ in _walk(get_resolver().url_patterns) if n == name)
    return {k: v for k, v in values.items() if f"<int:{k}>" in route}


def _expected(method: str, name: str, caller: str) -> str:
    if name in OWN_CREDENTIAL:
        return "404"
    page = name.startswith("ui:") and not name.endswith("-json")
    if caller == ANONYMOUS:
        return "sign-in" if page else "401"
    if caller not in EXPECTED[(method, name)]:
        if caller == OUTSIDER and name not in UNSCOPED:
            return "404"
        return "403"
    return "allowed"


def _outcome(status: int, location: str) -> str:
    if status == 302 and "/login/" in location:
        return "sign-in"
    if status in (401, 403, 404, 405) or status >= 500:
        return str(status)
    return "allowed"


@pytest.mark.parametrize("method,name", sorted(EXPECTED), ids=[f"{m} {n}" for m, n in sorted(EXPECTED)])
def test_role_matrix(method: str, name: str, world: dict[str, Any]) -> None:
    wrong = []
    for caller in CALLERS:
        client = APIClient()
        if caller != ANONYMOUS:
            client.force_login(world["users"][caller])
        url = reverse(name, kwargs=_kwargs(name, world, caller))
        if name == "api-project-export":
            url += "?format=csv"
        if name == "api-imports":
            response = client.post(url, {"text_col": "t"}, format="multipart")
        elif name.startswith("ui:"):
            response = getattr(client, method)(url)
        else:
            response = getattr(client, method)(url, {}, format="json")
        got = _outcome(response.status_code, response.get("Location", ""))
        want = _expected(method, name, caller)
        if got != want:
            wrong.append(f"{caller}: expected {want}, got {response.status_code}")
    assert not wrong, f"{method.upper()} {name}: " + "; ".join(wrong)


def test_non_members_get_404_for_objects_of_a_project(world: dict[str, Any]) -> None:
    """Lease and label URLs carry no project: the gate resolves the object's project first."""
    client = APIClient()
    client.force_login(world["users"][OUTSIDER])
    assignment_id, annotation_id = _owned(world, ANNOTATOR)
    unknown = client.post(f"/api/v1/assignments/{10**8}/renew")
    hidden = client.post(f"/api/v1/assignments/{assignment_id}/renew")
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["error"]["message"] == f"assignment {assignment_id} does not exist"
    assert client.patch(f"/api/v1/annotations/{annotation_id}", {"label": "a"}, format="json").status_code == 404


@pytest.mark.parametrize("caller", [STAFF, ANNOTATOR])
def test_ids_past_bigint_are_404_not_500(world: dict[str, Any], caller: str) -> None:
    huge = 10**20
    session = APIClient()
    session.force_login(world["users"][caller])
    for client in (session, token_client(world["users"][caller])):
        assert client.get(f"/api/v1/projects/{huge}/").status_code == 404
        assert client.post(f"/api/v1/assignments/{huge}/renew").status_code == 404


def test_the_project_list_shows_only_the_callers_projects(world: dict[str, Any]) -> None:
    client = APIClient()
    client.force_login(world["users"][OUTSIDER])
    assert [p["name"] for p in client.get("/api/v1/projects/").json()] == ["elsewhere"]
    client.force_login(world["users"][STAFF])
    assert sorted(p["name"] for p in client.get("/api/v1/projects/").json()) == ["elsewhere", "scoped"]


def test_reviewers_read_everyones_labels_annotators_their_own(world: dict[str, Any]) -> None:
    project = world["project"]
    f.AnnotationFactory(document=world["docs"][1], annotator=world["users"][ANNOTATOR])
    f.AnnotationFactory(document=world["docs"][2], annotator=world["users"][REVIEWER])
    client = APIClient()
    url = f"/api/v1/projects/{project.pk}/annotations"
    client.force_login(world["users"][REVIEWER])
    assert {a["annotator"] for a in client.get(url).json()} == {ANNOTATOR, REVIEWER}
    client.force_login(world["users"][ANNOTATOR])
    assert {a["annotator"] for a in client.get(url).json()} == {ANNOTATOR}


def test_a_request_reads_the_membership_once(world: dict[str, Any]) -> None:
    client = APIClient()
    client.force_login(world["users"][ANNOTATOR])
    url = f"/api/v1/projects/{world['project'].pk}/"
    client.get(url)  # warm the session
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    membership_reads = [q for q in ctx.captured_queries if "labeling_projectmembership" in q["sql"]]
    assert len(membership_reads) == 1


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
