"""Bulk writes refresh PostgreSQL's planner statistics (the queue query depends on them)."""

from __future__ import annotations

import pytest
from django.db import connection

from labeling.models import Document, Prediction
from labeling.services import planner, scoring
from labeling.services.imports import import_records
from labeling.services.projects import project_create
from tests.support.fixtures import labeled_project, shared_embedding_cache, train_now  # noqa: F401

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


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_scoring_pass_analyzes_the_predictions_table_where_it_stops_and_where_it_ends(
    monkeypatch: pytest.MonkeyPatch, settings, django_capture_on_commit_callbacks
) -> None:
    monkeypatch.setattr(planner, "ANALYZE_AFTER_ROWS", 20)
    settings.SCORING_BATCH_SIZE = 25
    project = labeled_project(pool=30, holdout=10, unlabeled=30)
    train_now(project)
    before = _analyzed(Prediction._meta.db_table)
    with django_capture_on_commit_callbacks():  # a budget of zero: one batch, then the continuation
        first = scoring.project_score_pending(project_id=project.pk, time_budget_s=0)
    assert first.remaining and first.scored == 25
    assert _analyzed(Prediction._meta.db_table) == before + 1  # the pass is not over: the queue reads its rows
    rest = scoring.project_score_pending(project_id=project.pk)
    assert not rest.remaining and rest.scored == 45
    assert _analyzed(Prediction._meta.db_table) == before + 2
    assert scoring.project_score_pending(project_id=project.pk).scored == 0
    assert _analyzed(Prediction._meta.db_table) == before + 2  # nothing written, nothing to refresh
