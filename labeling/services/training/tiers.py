"""Two training tiers: which retrain moves the encoder (deep), and what each one trains with.

A project with ``deep_tier_every = N > 0``: a run whose label count has crossed the next multiple of
N since the last deep run is a **deep** run (``deep_tier``: the top layers, or all of them, tuned with
the head, ``modelsvc.finetune``, bounded by ``deep_tier_budget_s``); every other run is a **fast**
run: the head alone, on the cached vectors of the *current champion's* encoder (the tuned one once a
deep run was promoted, the base one otherwise). Both go through the same promotion gate.

``deep_tier_every = 0`` (the default) keeps the single tier: every run trains as ``fine_tune`` says
(recorded as deep when that tunes the encoder).

The one-open-run-per-project rule stays: a deep run in flight is the project's open run, and the
triggers that arrive meanwhile are counted on it (coalesced); the fast run they ask for starts when
it ends. ``deep_tier_budget_s`` bounds that wait: the tuning stops at the budget and keeps its best
epoch (docs/WORKERS.md "Two training tiers").

Before a promoted deep run's champion serves, the pool's vectors of its tuned identity are put in the
embedding cache (``tuned_cache_build``: chunked, idempotent, resumable, like scoring); the old
champion serves until then, and the re-scoring that follows reads vectors, not the encoder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db.models import Max

from labeling.models import Document, Project, RunStatus, RunTier, TrainingRun
from labeling.selectors.models import champion_get
from labeling.services import modeling
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.encoder import TextEncoder
from modelsvc.model import Classifier

#: Settings the champion's encoder and this host's model config must share for a fast run to reuse it.
_ENCODER_KEYS = ("encoder", "max_length", "stride", "pooling")


@dataclass(frozen=True)
class TierPlan:
    tier: str  # RunTier
    train_config: TrainConfig
    encoder: TextEncoder
    deadline: float | None  # time.monotonic() value: the deep run's budget ends here
    why: str


def last_deep_labels(*, project: Project) -> int:
    """The label count of the last finished deep run (succeeded or failed: a failing deep run is not retried
    at every retrain), 0 when there was none."""
    got = TrainingRun.objects.filter(
        project=project, tier=RunTier.DEEP, status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED], labels_used__gt=0
    ).aggregate(m=Max("labels_used"))["m"]
    return int(got or 0)


def run_tier(*, project: Project, labeled: int) -> tuple[str, str]:
    """(tier, why) of a run that trains on ``labeled`` pool labels."""
    every = project.deep_tier_every
    if every <= 0:
        tier = RunTier.FAST if project.fine_tune == "frozen" else RunTier.DEEP
        return tier, f"single tier: fine_tune={project.fine_tune}"
    last = last_deep_labels(project=project)
    if labeled // every > last // every:
        return RunTier.DEEP, f"{labeled} labels crossed {labeled // every * every} (deep every {every}, last at {last})"
    return RunTier.FAST, f"next deep run at {(last // every + 1) * every} labels (deep every {every})"


def champion_classifier(*, project: Project) -> Classifier | None:
    champion = champion_get(project_id=project.pk)
    return modeling.classifier_for(champion) if champion is not None else None


def tier_plan(*, project: Project, labeled: int, config: ModelConfig, now: float | None = None) -> TierPlan:
    """What a run on ``labeled`` labels trains: its tier, config, encoder and deadline."""
    tier, why = run_tier(project=project, labeled=labeled)
    base = modeling.encoder_for(config)
    if project.deep_tier_every <= 0:
        return TierPlan(tier, TrainConfig(seed=project.seed, fine_tune=project.fine_tune), base, None, why)
    if tier == RunTier.DEEP:
        start = time.monotonic() if now is None else now
        return TierPlan(
            tier,
            TrainConfig(seed=project.seed, fine_tune=project.deep_tier),
            base,
            start + project.deep_tier_budget_s,
            why,
        )
    encoder = base
    champion = champion_classifier(project=project)
    if champion is not None and champion.tuned is not None:
        if all(getattr(champion.config, k) == getattr(config, k) for k in _ENCODER_KEYS):
            encoder = modeling.classifier_encoder(champion)
            why += f"; on the champion's tuned encoder {champion.encoder_id}"
    return TierPlan(tier, TrainConfig(seed=project.seed, fine_tune="frozen"), encoder, None, why)


def tuned_cache_build(
    *, project: Project, classifier: Classifier, progress: Callable[[float], None] | None = None
) -> int:
    """Put every document's vector of ``classifier``'s encoder in its embedding cache; vectors encoded.

    Chunks of ``SCORING_BATCH_SIZE`` in id order; a document whose text is cached is skipped, so a
    repeated or restarted build only encodes what is missing (idempotent, resumable).
    """
    encoder = modeling.classifier_encoder(classifier)
    cache = modeling.embedding_cache_for(encoder.encoder_id)
    ids = list(Document.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    size, encoded = int(settings.SCORING_BATCH_SIZE), 0
    for start in range(0, len(ids), size):
        texts = list(Document.objects.filter(pk__in=ids[start : start + size]).values_list("text", flat=True))
        found = cache.get_many(encoder.encoder_id, texts)
        missing = list(dict.fromkeys(t for i, t in enumerate(texts) if i not in found))
        if missing:
            encoder.encode(missing, cache=cache)
            encoded += len(missing)
        if progress is not None:
            progress(min(1.0, (start + size) / len(ids)))
    return encoded
