"""Web processes cancel slow statements; the API answers 503 with Retry-After and nothing is stored."""

from __future__ import annotations

import pytest
from django.db import connection, connections

from labeling import db
from labeling.api import documents as documents_api
from labeling.models import Document

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def web_timeout():
    db.web_process_begin(timeout_ms=200)
    yield
    db.web_process_begin(timeout_ms=0)
    connection.close()  # the test database's flush runs on a connection without the timeout


def test_a_web_connection_gets_the_statement_timeout(web_timeout):
    fresh = connections.create_connection("default")
    try:
        with fresh.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone()[0] == "200ms"
    finally:
        fresh.close()


def test_a_slow_query_answers_503_with_retry_after(web_timeout, ingest_client, project, docs, monkeypatch):
    connection.close()  # the next request opens a web connection, with the timeout

    def slow_list(**kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(2)")
        return Document.objects.none()

    monkeypatch.setattr(documents_api, "document_list", slow_list)
    res = ingest_client.get(f"/api/v1/projects/{project.pk}/documents/")
    assert res.status_code == 503
    assert res.json()["error"]["code"] == "query_timeout"
    assert int(res["Retry-After"]) > 0
