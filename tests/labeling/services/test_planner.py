"""Bulk writes refresh PostgreSQL's planner statistics (the queue query depends on them)."""

from __future__ import annotations

import pytest
from django.db import connection

from labeling.models import Document
from labeling.services import planner
from labeling.services.imports import import_records
from labeling.services.projects import project_create

pytestmark = pytest.mark.django_db(transaction=True)


def _analyzed(table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_force_next_flush()")
        cursor.execute("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = %s", [table])
        return int(cursor.fetchone()[0])


def test_a_large_import_analyzes_the_documents_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planner, "ANALYZE_AFTER_ROWS", 50)
    project = project_create(name="stats", labels=["a", "b"])
    before = _analyzed(Document._meta.db_table)
    import_records(project=project, records=[{"text": f"document {i}"} for i in range(60)])
    assert _analyzed(Document._meta.db_table) == before + 1


def test_a_small_import_leaves_it_to_autovacuum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(planner, "ANALYZE_AFTER_ROWS", 50)
    project = project_create(name="stats small", labels=["a", "b"])
    before = _analyzed(Document._meta.db_table)
    import_records(project=project, records=[{"text": f"document {i}"} for i in range(10)])
    assert _analyzed(Document._meta.db_table) == before
    assert not planner.planner_statistics_refresh(model=Document, rows_written=10)
