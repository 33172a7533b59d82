"""The pre-model queue order: which pool documents to label before the first trained model.

Computed once per pool change, in the scoring worker (``project_score_pending`` calls it while the
project has no champion, i.e. after each ingest), never per request: the encoder embeds a seeded
sample of the unlabeled pool (through the embedding cache the first model then trains from), modelsvc
orders it (``modelsvc.coldstart``), and the order is stored as ``Document.cold_start_rank``. The queue
serves ranked documents first, lowest rank first, under its usual rules (free places, never twice to
one annotator, leases), then the seeded random order as before.

``COLD_START_METHOD``: ``typiclust`` (typical and diverse documents), ``zero_shot`` (the most
uncertain documents under a softmax over cosine similarities to the label descriptions; single-label
projects only, else TypiClust), ``random`` (no ranking: the seeded random order). Zero-shot
probabilities are not stored and no ModelVersion is made: nothing was trained, so nothing can be
promoted, evaluated or shown as a model's prediction; the lease's ``reason.strategy`` says which order
chose the document, and ``Project.cold_start`` records how the order was computed.
"""

from __future__ import annotations

import random
import time
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from labeling.models import Document, Project, Split
from labeling.selectors.models import champion_get
from labeling.services import modeling
from modelsvc.coldstart import label_prompt, typiclust_order, zero_shot_order, zero_shot_probabilities

#: The lease reason's ``strategy`` for a document served from the ranked order, per method.
STRATEGY = {"typiclust": "cold_start_typiclust", "zero_shot": "cold_start_zero_shot"}
#: How the labeling page's "chosen by" line names the pre-model orders.
STRATEGY_NAMES = {
    "cold_start_typiclust": "TypiClust, before the first model (a typical document of an unlabeled cluster)",
    "cold_start_zero_shot": "zero-shot label similarity, before the first model (nothing trained yet)",
    "cold_start_random": "seeded random order, before the first model",
}
#: Documents encoded per cache write: a task stopped by its time limit keeps what it encoded.
_ENCODE_CHUNK = 500
#: A label's guideline note is cut to this many characters before it is encoded with the label's name.
_NOTE_CHARS = 300


def cold_start_budget(project: Project) -> int:
    """How many documents the order ranks: twice the labels a first model needs (labeling goes on while
    it trains and is gated), at most COLD_START_BUDGET_MAX."""
    needed = max(project.retrain_after, 2 * len(project.label_names))
    return max(1, min(2 * needed, settings.COLD_START_BUDGET_MAX))


def _method_for(project: Project) -> str:
    method = settings.COLD_START_METHOD
    if method == "zero_shot" and not project.label_space.zero_shot:
        return "typiclust"
    return method


def _pool_token(project: Project, method: str) -> dict[str, Any]:
    """What the order depends on: the pool (count, newest id), the label set and the method."""
    pool = Document.objects.filter(project=project, split=Split.POOL).aggregate(n=Count("id"), newest=Max("id"))
    return {
        "pool": pool["n"],
        "newest": pool["newest"],
        "label_set_version": project.label_set_version,
        "method": method,
    }


def _label_prompts(project: Project) -> list[str]:
    notes = project.label_guidelines if isinstance(project.label_guidelines, dict) else {}
    by_name = {str(item.get("name")): item for item in project.labels if isinstance(item, dict)}
    prompts = []
    for name in project.label_names:
        item = by_name.get(name, {})
        note = str(notes.get(name) or "")[:_NOTE_CHARS]
        prompts.append(label_prompt(name, str(item.get("text") or ""), note))
    return prompts


def _encode(texts: list[str], deadline: float) -> np.ndarray | None:
    """(N, H) vectors through the embedding cache; None when the deadline passed first."""
    encoder = modeling.encoder_for()
    cache = modeling.embedding_cache_for(encoder.encoder_id)
    parts = []
    for start in range(0, len(texts), _ENCODE_CHUNK):
        if time.monotonic() > deadline:
            return None
        parts.append(encoder.encode(texts[start : start + _ENCODE_CHUNK], cache=cache))
    return np.concatenate(parts) if parts else np.zeros((0, encoder.hidden_size), dtype=np.float32)


def cold_start_order_refresh(*, project_id: int, time_budget_s: float = 240.0) -> dict[str, Any]:
    """Recompute the project's pre-model order if the pool, label set or method changed since the last one.

    Returns what it did: ``{"skipped": why}``, or ``{"method", "ranked", ...}``, or ``{"remaining": True}``
    when the sample's encoding ran out of time (the cache keeps what was encoded; the caller enqueues
    a continuation).
    """
    started = time.monotonic()
    project = Project.objects.filter(pk=project_id).first()
    if project is None:
        return {"skipped": "no project"}
    if champion_get(project_id=project_id) is not None:
        return {"skipped": "the project has a champion"}
    method = _method_for(project)
    token = _pool_token(project, method)
    if project.cold_start.get("token") == token:
        return {"skipped": "up to date"}
    if method == "random":
        _order_store(project, [], token=token, method=method, sample=0)
        return {"method": method, "ranked": 0, "sample": 0}
    unlabeled, labeled = _pool_sample(project)
    budget = cold_start_budget(project)
    ranked_ids: list[int] = []
    if unlabeled:
        if method == "typiclust":
            vectors = _encode(_texts(unlabeled + labeled), started + time_budget_s)
        else:
            vectors = _encode(_texts(unlabeled), started + time_budget_s)
        if vectors is None:
            return {"remaining": True}
        n = len(unlabeled)
        if method == "zero_shot":
            label_vectors = _encode(_label_prompts(project), float("inf"))
            assert label_vectors is not None
            order = zero_shot_order(zero_shot_probabilities(vectors, label_vectors), budget=budget)
        else:
            order = typiclust_order(vectors, budget=budget, seed=project.seed, labeled=range(n, n + len(labeled)))
        ranked_ids = [unlabeled[int(i)] for i in order]
    _order_store(project, ranked_ids, token=token, method=method, sample=len(unlabeled))
    return {"method": method, "ranked": len(ranked_ids), "sample": len(unlabeled)}


def _pool_sample(project: Project) -> tuple[list[int], list[int]]:
    """Ids of (unlabeled, labeled) pool documents, each a seeded sample of at most COLD_START_SAMPLE, in id order."""
    rows = Document.objects.filter(project=project, split=Split.POOL).order_by("id").values_list("id", "is_labeled")
    rng = random.Random(f"cold-start:{project.seed}")
    cap = settings.COLD_START_SAMPLE
    out: list[list[int]] = []
    for want in (False, True):
        ids = [pk for pk, done in rows if done == want]
        out.append(sorted(rng.sample(ids, cap)) if len(ids) > cap else ids)
    return out[0], out[1]


def _texts(ids: list[int]) -> list[str]:
    text = dict(Document.objects.filter(pk__in=ids).values_list("id", "text"))
    return [text[pk] for pk in ids]


def _order_store(project: Project, ranked_ids: list[int], *, token: dict[str, Any], method: str, sample: int) -> None:
    """Replace the project's ranks in one transaction (the queue sees the old order or the new one)."""
    with transaction.atomic():
        locked = Project.objects.select_for_update().get(pk=project.pk)
        Document.objects.filter(project=locked, cold_start_rank__isnull=False).update(cold_start_rank=None)
        documents = [Document(pk=pk, cold_start_rank=rank) for rank, pk in enumerate(ranked_ids, start=1)]
        Document.objects.bulk_update(documents, ["cold_start_rank"], batch_size=500)
        locked.cold_start = {
            "method": method,
            "strategy": STRATEGY.get(method, "cold_start_random"),
            "ranked": len(ranked_ids),
            "sample": sample,
            "token": token,
            "computed_at": timezone.now().isoformat(),
        }
        locked.save(update_fields=["cold_start"])
