"""The two training tiers: which retrain is deep, its time bound, the tuned cache before the tuned champion serves.

Real PostgreSQL; the slow test trains with the real packaged encoder (``top1`` on 60 rt-snippets labels).
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from labeling.models import Document, RunStatus, RunTier, validate_deep_tier
from labeling.selectors.models import champion_get
from labeling.services import modeling
from labeling.services.training import tiers
from labeling.services.training.tiers import run_tier, tier_plan
from modelsvc import finetune
from modelsvc.config import TrainConfig
from tests.factories import ProjectFactory, TrainingRunFactory, UserFactory
from tests.support.data import documents_create, label, rt_snippets
from tests.support.fixtures import labeled_project, shared_embedding_cache, train_now  # noqa: F401

pytestmark = [pytest.mark.django_db]


def test_a_retrain_is_deep_when_its_labels_cross_the_next_multiple_since_the_last_deep_run() -> None:
    project = ProjectFactory(deep_tier_every=250, deep_tier="top2")
    assert run_tier(project=project, labeled=100)[0] == RunTier.FAST
    assert run_tier(project=project, labeled=249)[0] == RunTier.FAST
    assert run_tier(project=project, labeled=260)[0] == RunTier.DEEP  # no deep run yet, 250 crossed
    TrainingRunFactory(project=project, tier=RunTier.DEEP, status=RunStatus.SUCCEEDED, labels_used=260)
    assert run_tier(project=project, labeled=300)[0] == RunTier.FAST
    assert run_tier(project=project, labeled=499)[0] == RunTier.FAST
    tier, why = run_tier(project=project, labeled=510)
    assert tier == RunTier.DEEP and "crossed 500" in why
    # A failed deep run counts as the last one (a deep run that keeps failing is not retried every retrain);
    # a fast run does not.
    TrainingRunFactory(project=project, tier=RunTier.DEEP, status=RunStatus.FAILED, labels_used=510)
    TrainingRunFactory(project=project, tier=RunTier.FAST, status=RunStatus.SUCCEEDED, labels_used=760)
    assert run_tier(project=project, labeled=600)[0] == RunTier.FAST
    assert run_tier(project=project, labeled=750)[0] == RunTier.DEEP


def test_with_the_deep_tier_off_every_run_trains_as_fine_tune_says() -> None:
    frozen = ProjectFactory()
    assert frozen.deep_tier_every == 0
    assert run_tier(project=frozen, labeled=5000)[0] == RunTier.FAST
    tuned = ProjectFactory(fine_tune="top2")
    assert run_tier(project=tuned, labeled=30)[0] == RunTier.DEEP


def test_a_deep_run_is_bounded_by_the_projects_budget_and_a_fast_run_by_nothing() -> None:
    project = ProjectFactory(deep_tier_every=100, deep_tier="top1", deep_tier_budget_s=600)
    config = modeling.model_config()
    deep = tier_plan(project=project, labeled=120, config=config, now=1000.0)
    assert deep.tier == RunTier.DEEP and deep.deadline == 1600.0
    assert deep.train_config.fine_tune == "top1"
    fast = tier_plan(project=project, labeled=90, config=config, now=1000.0)
    assert fast.tier == RunTier.FAST and fast.deadline is None and fast.train_config.fine_tune == "frozen"
    assert fast.encoder.tuned is None  # no champion yet: the base encoder


def test_the_deep_tier_must_tune_the_encoder() -> None:
    with pytest.raises(ValidationError, match="not frozen"):
        validate_deep_tier("frozen")
    with pytest.raises(ValidationError):
        validate_deep_tier("top0")
    validate_deep_tier("full")
    validate_deep_tier("top3")


@pytest.mark.slow
def test_fine_tuning_stops_at_its_deadline_and_keeps_what_it_has() -> None:
    rows = rt_snippets(40, seed=3)
    texts, labels = [r[0] for r in rows], [r[1] for r in rows]
    result = finetune.train_fine_tuned(
        texts,
        labels,
        label_names=sorted(set(labels)),
        train_config=TrainConfig(seed=0, fine_tune="top1"),
        encoder=modeling.encoder_for(),
        deadline=time.monotonic(),  # spent before the first joint epoch
    )
    info = result.calibration["fine_tune"]
    assert info["epochs"] == 0 and info["stopped_by_budget"] is True
    assert info["skipped"]  # no joint epoch: the frozen model on the same labels is what it has
    assert result.classifier.tuned is None


@pytest.mark.slow
@pytest.mark.usefixtures("shared_embedding_cache")
def test_a_deep_run_caches_its_tuned_vectors_before_it_serves_and_fast_runs_then_use_its_encoder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Whether a joint epoch beats the frozen probe on 60 labels is a coin toss: let the stopping rule
    # see a falling validation loss (the gradient steps, the refit and everything after are real).
    losses = itertools.count()
    monkeypatch.setattr(finetune, "_val_loss", lambda *args: 1.0 - 0.01 * next(losses))
    project = labeled_project(pool=60, holdout=30, unlabeled=10, retrain_after=10, deep_tier_every=50, deep_tier="top1")
    seen: dict[str, Any] = {}
    build = tiers.tuned_cache_build

    def watched(**kwargs: Any) -> int:
        seen["champion_during_build"] = champion_get(project_id=project.pk)
        encoded = build(**kwargs)
        tuned = kwargs["classifier"]
        texts = list(Document.objects.filter(project=project).values_list("text", flat=True))
        cached = modeling.embedding_cache_for(tuned.encoder_id).get_many(tuned.encoder_id, texts)
        seen["complete_at_build"] = len(cached) == len(texts)
        return int(encoded)

    monkeypatch.setattr(tiers, "tuned_cache_build", watched)
    deep = train_now(project)
    assert deep.status == RunStatus.SUCCEEDED and deep.promoted, deep.error
    assert deep.tier == RunTier.DEEP and deep.train_seconds is not None and deep.train_seconds > 0
    champion = champion_get(project_id=project.pk)
    assert champion is not None and champion == deep.model_version
    classifier = modeling.classifier_for(champion)
    assert classifier.tuned is not None and "+top1@" in classifier.encoder_id
    # The tuned vectors were all in the cache while no tuned model served (the first model: none at all).
    # How many the build itself encoded depends on the suite: the embedding cache is shared between tests,
    # and an earlier one may have tuned the same seeded identity on the same texts already.
    assert seen["champion_during_build"] is None and seen["complete_at_build"]
    # ... for every document of the project, under the tuned identity.
    texts = list(Document.objects.filter(project=project).values_list("text", flat=True))
    cache = modeling.embedding_cache_for(classifier.encoder_id)
    assert len(cache.get_many(classifier.encoder_id, texts)) == len(texts)
    # A second build finds them all: idempotent.
    assert tiers.tuned_cache_build(project=project, classifier=classifier) == 0

    # 20 more labels (80 < 100): a fast run, the head on the champion's tuned encoder.
    extra = documents_create(project, rt_snippets(100, seed=7)[-20:])
    label(extra, UserFactory())
    fast = train_now(project)
    assert fast.status == RunStatus.SUCCEEDED, fast.error
    assert fast.tier == RunTier.FAST and fast.labels_used == 80
    fast_classifier = modeling.classifier_for(fast.model_version)
    assert fast_classifier.encoder_id == classifier.encoder_id
    assert fast_classifier.tuned is not None and fast_classifier.tuned.digest == classifier.tuned.digest
    assert fast_classifier.calibration["tier"]["tier"] == "fast"
