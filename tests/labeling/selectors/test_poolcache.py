"""Whole-pool figures of the dashboard and /stats: exact on small projects, cached and stamped on large ones."""

from __future__ import annotations

import pytest
from django.core.cache import cache

from labeling.models import Document, ModelStatus
from labeling.selectors.dashboard import dashboard, labeling_progress
from labeling.selectors.stats import project_stats
from tests.factories import (
    DocumentFactory,
    ModelVersionFactory,
    PredictionFactory,
    ProjectFactory,
    UserFactory,
    bulk_scored_project,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def scored_project():
    project = ProjectFactory()
    champion = ModelVersionFactory(project=project, status=ModelStatus.CHAMPION)
    for _ in range(4):
        PredictionFactory(document=DocumentFactory(project=project), model_version=champion)
    return project, champion


def _label_one(project) -> None:
    Document.objects.filter(pk=Document.objects.filter(project=project).order_by("id").values("pk")[:1]).update(
        is_labeled=True
    )


def test_a_small_project_is_counted_on_every_request(scored_project, settings):
    settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS = 5  # 4 documents: below
    project, _ = scored_project
    user = UserFactory()
    first = dashboard(project=project, user=user)
    assert first["counts"]["labeled"] == 0 and first["pool"]["as_of"] is None
    _label_one(project)
    again = dashboard(project=project, user=user)
    assert again["counts"]["labeled"] == 1
    assert sum(b["count"] for b in again["pool"]["histogram"]["bins"]) == 3  # the unlabeled pool only
    assert project_stats(project)["queue_size"] == 3


def test_a_large_project_reads_its_pool_figures_from_the_cache_until_they_lapse(scored_project, settings):
    settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS = 4  # 4 documents: at the limit
    project, _ = scored_project
    user = UserFactory()
    first = dashboard(project=project, user=user)
    stats = project_stats(project)
    assert first["pool"]["as_of"] is not None and stats["pool_figures_as_of"] is not None
    _label_one(project)
    cached = dashboard(project=project, user=user)
    assert cached["counts"]["labeled"] == 0  # up to POOL_FIGURES_CACHE_SECONDS old, and says so
    assert cached["pool"]["as_of"] == first["pool"]["as_of"]
    assert project_stats(project)["queue_size"] == 4
    cache.clear()  # the period lapsed
    assert dashboard(project=project, user=user)["counts"]["labeled"] == 1
    assert project_stats(project)["queue_size"] == 3


def test_a_new_champion_is_shown_at_once(scored_project, settings):
    settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS = 4
    project, champion = scored_project
    user = UserFactory()
    assert dashboard(project=project, user=user)["pool"]["coverage"]["scored_by_champion"] == 4
    champion.status = ModelStatus.RETIRED
    champion.save(update_fields=["status"])
    newer = ModelVersionFactory(project=project, status=ModelStatus.CHAMPION)
    PredictionFactory(document=Document.objects.filter(project=project).first(), model_version=newer)
    assert dashboard(project=project, user=user)["pool"]["coverage"]["scored_by_champion"] == 1


def test_the_labeling_pages_progress_strip_is_cached_on_a_large_project(scored_project, settings):
    project, _ = scored_project
    user = UserFactory()
    settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS = 5
    _label_one(project)
    assert labeling_progress(project=project, user=user)["queue_remaining"] == 3
    cache.clear()
    settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS = 4
    first = labeling_progress(project=project, user=user)
    assert (first["queue_remaining"], first["labeled_total"]) == (3, 1)
    _label_one_more(project)
    again = labeling_progress(project=project, user=user)
    assert (again["queue_remaining"], again["pool_figures_as_of"]) == (3, first["pool_figures_as_of"])


def _label_one_more(project) -> None:
    Document.objects.filter(
        pk=Document.objects.filter(project=project, is_labeled=False).order_by("id").values("pk")[:1]
    ).update(is_labeled=True)


def test_a_large_projects_prediction_figures_come_from_a_page_sample_and_say_so(settings):
    from django.db import connection

    settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS = 100
    settings.POOL_FIGURES_SAMPLE_DOCUMENTS = 600
    bulk_scored_project(6000, champion_labels=None)  # another project's rows on the same pages count for nothing
    project, _ = bulk_scored_project(6000, champion_labels=("fresh", "fresh", "rotten"))
    board = dashboard(project=project, user=UserFactory())
    sample = board["pool"]["sample"]
    if connection.vendor != "postgresql":  # TABLESAMPLE is PostgreSQL's: elsewhere every figure stays exact
        assert sample is None and board["pool"]["coverage"]["scored_by_champion"] == 5400
        return
    assert sample["of"] == 6000 and 200 < sample["documents"] < 1500, sample
    # Counts are exact for documents and estimated (scaled) for predictions: close to the truth here,
    # since every page holds the same mix.
    assert board["counts"]["documents"] == 6000
    balance = {row["label"]: row["count"] for row in board["pool"]["class_balance"]}
    truth = {"fresh": 4000, "rotten": 2000}  # all 6,000 scored, the 600 unlabeled holdout ones left out
    blind = {"fresh": 400, "rotten": 200}
    for label, count in balance.items():
        assert abs(count - (truth[label] - blind[label])) <= 0.15 * truth[label], balance
    unlabeled_pool = 5400
    assert abs(sum(b["count"] for b in board["pool"]["histogram"]["bins"]) - unlabeled_pool) <= 0.15 * unlabeled_pool
    assert board["pool"]["coverage"] == {"pool_documents": 5400, "scored_by_champion": 5400, "share": 1.0}
    assert 0 < len(board["map"]) <= sample["documents"]
    stats = project_stats(project)
    assert stats["coverage_sample"]["of"] == 6000 and stats["coverage"]["share"] == 1.0

    cache.clear()
    settings.POOL_FIGURES_SAMPLE_DOCUMENTS = 0  # off: every figure exact again
    exact = dashboard(project=project, user=UserFactory())
    assert exact["pool"]["sample"] is None
    assert {r["label"]: r["count"] for r in exact["pool"]["class_balance"]} == {"fresh": 3600, "rotten": 1800}
    assert sum(b["count"] for b in exact["pool"]["histogram"]["bins"]) == unlabeled_pool


def test_a_project_below_twice_the_sample_size_is_counted_whole(settings):
    settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS = 100
    settings.POOL_FIGURES_SAMPLE_DOCUMENTS = 600
    project, _ = bulk_scored_project(1000, champion_labels=("fresh", "rotten"))
    board = dashboard(project=project, user=UserFactory())
    assert board["pool"]["sample"] is None and board["pool"]["as_of"] is not None
    balance = {r["label"]: r["count"] for r in board["pool"]["class_balance"]}
    assert balance == {"fresh": 500, "rotten": 400}  # the 100 blind documents are odd ones
