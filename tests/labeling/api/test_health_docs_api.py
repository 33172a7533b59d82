"""Probes, the OpenAPI schema and the locally served docs page."""

from __future__ import annotations

import json
import re

import pytest
import yaml

pytestmark = pytest.mark.django_db


def test_healthz_needs_no_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_checks_database_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_readyz_reports_an_unreachable_broker(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"] != "ok"


def test_readyz_never_shows_driver_errors(client, settings, caplog):
    settings.CELERY_BROKER_URL = "redis://secret-user:pw@127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "unavailable"
    assert b"127.0.0.1" not in response.content and b"secret-user" not in response.content
    assert "broker does not answer" in caplog.text  # the details went to the log


def test_pages_carry_a_content_security_policy(client):
    response = client.get("/login/")
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "unsafe-inline" not in policy
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"<style>" not in docs.content and b"<script>" not in docs.content
    assert client.get("/api/docs/?script").status_code == 200


def test_schema_lists_every_operation(client):
    response = client.get("/api/v1/schema/")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    operations = {op["operationId"] for path in schema["paths"].values() for op in path.values()}
    assert operations >= {
        "projects_list",
        "projects_create",
        "projects_retrieve",
        "projects_policy_update",
        "documents_create",
        "documents_list",
        "documents_retrieve",
        "imports_create",
        "imports_retrieve",
        "queue_next",
        "assignments_renew",
        "assignments_skip",
        "assignments_release",
        "annotations_create",
        "annotations_update",
        "annotations_list",
        "predict",
        "models_list",
        "models_promote",
        "models_rollback",
        "training_runs_list",
        "training_runs_create",
        "projects_stats",
        "projects_export",
        "guidelines_retrieve",
        "guidelines_update",
        "document_flag",
        "flags_list",
    }
    assert {"tokenAuth", "cookieAuth"} <= set(schema["components"]["securitySchemes"])


def test_docs_page_uses_local_assets_only(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/api/docs/assets/swagger-ui-bundle.js" in html
    # Every asset the page loads is served here: no absolute or protocol-relative URL anywhere (a bare
    # "cdn" substring check failed once on the page's random CSRF token).
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", html)
    assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
    assert "://" not in html
    asset = client.get("/api/docs/assets/swagger-ui-bundle.js")
    assert asset.status_code == 200 and asset["Content-Type"].endswith("javascript")
    assert client.get("/api/docs/assets/..%2Fsettings.py").status_code == 404


def test_unknown_api_paths_are_json_404(client):
    response = client.get("/api/v2/anything")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_root_error_handlers_answer_json_under_api_and_html_elsewhere(rf):
    from labeling.api.errors import handler404, handler500

    api_500 = handler500(rf.get("/api/v1/projects/"))
    assert api_500.status_code == 500
    assert json.loads(api_500.content)["error"]["code"] == "server_error"
    assert json.loads(handler404(rf.get("/api/v1/x"), None).content)["error"]["code"] == "not_found"
    page = handler404(rf.get("/projects/1/label/"), None)
    assert page.status_code == 404 and not page["Content-Type"].startswith("application/json")


def test_token_clients_have_a_rate_limit_too(annotator_client, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"anon": "100/min", "user": "2/min"},
    }
    codes = [annotator_client.get("/api/v1/projects/").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
