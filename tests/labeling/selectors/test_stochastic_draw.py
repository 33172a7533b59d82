"""A stochastic strategy's draw (size and weight sum of the open ranking): counted per lease on small projects,
counted at most once per period per champion on large ones."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.cache import cache

from labeling.models import ModelStatus
from labeling.selectors import queue as q
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next
from labeling.services.documents import document_bulk_create
from labeling.services.projects import project_create
from modelsvc.acquisition import POWER_FLOOR
from tests.factories import ModelVersionFactory, PredictionFactory, UserFactory

pytestmark = pytest.mark.django_db


def _power_project(n: int):
    project = project_create(name="draw", labels=["a", "b"], holdout_fraction=0.0, acquisition_strategy="power_bald")
    docs = [d for d, _ in document_bulk_create(project=project, items=[{"text": f"doc {i}"} for i in range(n)])]
    champion = ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    bald = np.linspace(0.01, 0.3, n)
    for doc, b, key in zip(docs, bald, np.arange(n, 0, -1), strict=True):
        PredictionFactory(document=doc, model_version=champion, mutual_info=float(b), acquisition_score=float(key))
    return project, champion, bald


def test_a_small_project_counts_the_draw_for_every_lease(settings):
    settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS = 100
    project, champion, bald = _power_project(6)
    user = UserFactory()
    first = assignment_next(project=project, annotator=user)
    assert first.selection_pool_size == 6 and "normaliser_as_of" not in first.reason
    annotation_submit(assignment=first, user=user, label="a")
    second = assignment_next(project=project, annotator=user)
    assert second.selection_pool_size == 5  # the labeled document left the draw
    assert second.reason["normaliser"] == pytest.approx(float((bald[1:] + POWER_FLOOR).sum()))


def test_a_large_project_reuses_the_draw_until_it_lapses_and_says_how_old_it_is(settings):
    settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS = 6  # 6 documents: at the limit
    project, champion, bald = _power_project(6)
    user = UserFactory()
    first = assignment_next(project=project, annotator=user)
    assert first.selection_pool_size == 6
    assert first.reason["normaliser"] == pytest.approx(float((bald + POWER_FLOOR).sum()))
    assert first.reason["normaliser_as_of"]
    annotation_submit(assignment=first, user=user, label="a")
    cached = assignment_next(project=project, annotator=user)
    assert cached.selection_pool_size == 6  # up to POOL_FIGURES_CACHE_SECONDS old, and the lease says so
    assert cached.reason["normaliser_as_of"] == first.reason["normaliser_as_of"]
    # The probability is the candidate's weight over the cached sum.
    base = cached.reason["base"]
    assert cached.selection_probability == pytest.approx((base + POWER_FLOOR) / first.reason["normaliser"])
    cache.clear()  # the period lapsed
    annotation_submit(assignment=cached, user=user, label="a")
    assert assignment_next(project=project, annotator=user).selection_pool_size == 4
    # Another power is another key.
    squared = float(((bald[2:] + POWER_FLOOR) ** 2).sum())
    assert q.stochastic_draw(champion, power=2.0).normaliser == pytest.approx(squared)
