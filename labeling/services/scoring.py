"""Scoring: the champion's calibrated predictions for every document, batched, idempotent, resumable.

One loop serves three callers: new documents after ingestion (``SCORE_PENDING``, coalesced), the
whole pool after a promotion (``RESCORE_POOL``, progress shown on the TrainingRun) and the beat
reconciliation. "Pending" always means *documents without a prediction from the current champion*,
so a crash, a lost message or a broker restart only delays scoring: the next pass resumes where the
last one stopped. Predictions are upserted on (document, model_version), so a repeated batch
rewrites the same rows instead of adding new ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from labeling.labelspace import label_space_for_model
from labeling.models import Document, ModelVersion, Prediction, Project, TrainingRun
from labeling.selectors.models import (
    champion_get,
    champion_has_gaps,
    documents_id_slices,
    documents_unscored_page,
)
from labeling.services import coldstart, modeling
from labeling.services.assignments import assignments_expire
from labeling.services.dispatch import TaskName, enqueue
from labeling.services.errors import ScoringBusyError
from labeling.services.planner import planner_statistics_refresh
from labeling.services.prediction_writes import (
    PredictionColumns,
    PredictionWrite,
    prediction_writer,
    predictions_write,
)
from modelsvc.acquisition import acquisition_scores, strategy_get
from modelsvc.inference import ScoreResult
from modelsvc.multilabel import MultiLabelScore, multilabel_acquisition
from modelsvc.projection import map_fit, map_project

log = logging.getLogger(__name__)

#: A scoring task stops after this long and enqueues its continuation, so no task nears its time limit.
SCORING_TIME_BUDGET_S = 120.0
#: A re-score's progress on its run is refreshed at most this often (and when a task stops).
PROGRESS_EVERY_S = 2.0
#: A page that scored in less than this grows the next one (``next_page_size``), up to this many batches.
FAST_BATCH_S = 2.0
MAX_PAGE_BATCHES = 8


@dataclass
class ScoreReport:
    project_id: int
    model_version_id: int | None = None
    scored: int = 0
    batches: int = 0
    remaining: bool = False  # stopped on the time budget; a continuation was enqueued
    busy: bool = False  # another scorer holds the project
    stale: bool = False  # the message named a model that is no longer the champion
    slices: int = 0  # the re-score was split into this many RESCORE_SLICE tasks
    cold_start: dict[str, Any] = field(default_factory=dict)  # no champion: the pre-model order's refresh


@dataclass(frozen=True)
class IdSlice:
    """One slice of a split re-score: document ids ``first_id`` to ``last_id`` inclusive."""

    index: int
    first_id: int
    last_id: int


# --- the 2-D map -------------------------------------------------------------------------------


def map_projection_for(model_version: ModelVersion, embeddings: np.ndarray) -> dict[str, Any]:
    """The model version's map projection; fitted on ``embeddings`` (N, H) (and stored) if it has none.

    Normally fitted at training time; the row lock makes a concurrent first batch use the same one.
    """
    if "map" in model_version.calibration:
        return model_version.calibration["map"]
    with transaction.atomic():
        locked = ModelVersion.objects.select_for_update().get(pk=model_version.pk)
        if "map" not in locked.calibration:
            locked.calibration["map"] = map_fit(embeddings)
            locked.save(update_fields=["calibration"])
    model_version.calibration = locked.calibration
    return locked.calibration["map"]


# --- predictions ---------------------------------------------------------------------------------


def acquisition_for(strategy: str, result: ScoreResult | MultiLabelScore, *, seed: int = 0) -> np.ndarray:
    """The project's acquisition score per document (N,); higher = ask sooner.

    A batch-aware strategy stores its plain score too: the queue applies the batch rule at lease time.
    ``seed`` only matters for "random" and stochastic strategies: it differs per batch so batches do not
    repeat one sequence.
    A multi-label result ranks by its item score, the summed per-label BALD (``multilabel_acquisition``).
    """
    if isinstance(result, MultiLabelScore):
        return multilabel_acquisition(strategy, result, seed=seed)
    assert result.samples is not None
    return np.asarray(acquisition_scores(strategy, result.samples, seed=seed), dtype=float)


def acquisition_seed(project: Project, model_version: ModelVersion, first_document_id: int) -> int:
    """The seed of one scoring batch's acquisition draw.

    A stochastic strategy (``Strategy.power``) draws afresh for every model version, so the Gumbel noise
    of a document is independent from one round to the next (with one noise per document for all
    versions, a document that drew a high key once would stay near the top of every later queue).
    """
    seed = project.seed + first_document_id
    if strategy_get(project.acquisition_strategy).power is not None:
        seed += 1_000_003 * model_version.version
    return seed


def prediction_bulk_upsert(
    *,
    model_version: ModelVersion,
    project: Project,
    document_ids: list[int],
    result: ScoreResult | MultiLabelScore,
    write: PredictionWrite = predictions_write,
) -> int:
    """Write one prediction per document for ``model_version``; an existing row is overwritten.

    Multi-label: the predicted set at the version's per-label thresholds; the uncertainty columns hold
    item summaries (entropies and mutual information summed over labels, the margin of the label
    closest to its threshold). ``write``: ``predictions_write``, or a ``PredictionWriter``'s (stored
    once the writer is flushed).
    """
    space = label_space_for_model(model_version, task_type=project.task_type)
    answers, answer_index, confidence = space.predicted_columns(result.probs, model_version.thresholds)
    points = map_project(map_projection_for(model_version, result.embeddings), result.embeddings)
    acquisition = acquisition_for(
        project.acquisition_strategy, result, seed=acquisition_seed(project, model_version, document_ids[0])
    )
    columns = PredictionColumns(
        document_id=np.asarray(document_ids),
        probabilities=result.probs,
        answers=answers,
        answer_index=answer_index,
        confidence=confidence,
        **_uncertainty_columns(result),
        acquisition_score=acquisition,
        map_x=points[:, 0],
        map_y=points[:, 1],
        scored_at=timezone.now(),
    )
    write(model_version_id=model_version.pk, columns=columns)
    return len(columns)


def _uncertainty_columns(result: ScoreResult | MultiLabelScore) -> dict[str, np.ndarray]:
    """The stored per-document uncertainty columns, each (N,)."""
    if isinstance(result, MultiLabelScore):
        return {
            "entropy": result.entropy.sum(1),
            "expected_entropy": result.expected_entropy.sum(1),
            "mutual_info": result.score,
            "margin": result.margin(),
        }
    return {
        "entropy": result.entropy,
        "expected_entropy": result.expected_entropy,
        "mutual_info": result.mutual_info,
        "margin": result.margin,
    }


def _rescore_progress(model_version: ModelVersion, *, done: bool = False) -> None:
    """Show re-scoring progress on the run that promoted this model, whichever scorer does the work."""
    runs = TrainingRun.objects.filter(model_version=model_version, stage="rescore")
    if done:
        runs.update(stage="done", progress=1.0)
        return
    if not runs.exists():
        return
    total = model_version.project.documents.count()
    scored = Prediction.objects.filter(model_version=model_version).count()
    runs.update(progress=min(1.0, scored / max(total, 1)))


def project_score_pending(
    *,
    project_id: int,
    model_version_id: int | None = None,
    run_id: int | None = None,
    time_budget_s: float | None = None,
    id_slice: IdSlice | None = None,
) -> ScoreReport:
    """Score every document of the project that lacks a prediction from the current champion.

    Newest documents first, ``SCORING_BATCH_SIZE`` at a time. ``model_version_id`` is a version
    token: when given and no longer the champion, nothing is done. The run that promoted the
    champion shows the progress (stage "rescore", then "done"), whichever message did the work, so
    a re-scoring resumed by the reconciliation still finishes its run. Stops after
    ``time_budget_s`` and enqueues its continuation (``RESCORE_POOL`` when ``run_id`` is given).

    ``id_slice``: only that range of ids (a ``RESCORE_SLICE`` task), beside the other slices' scorers;
    the scorer that finds the champion without gaps closes the run. Its continuation is the same slice.
    """
    report = ScoreReport(project_id=project_id, model_version_id=model_version_id)
    budget = SCORING_TIME_BUDGET_S if time_budget_s is None else time_budget_s
    started = time.monotonic()
    walking: int | None = None
    cursor: int | None = None
    shown = -PROGRESS_EVERY_S
    page_size = settings.SCORING_BATCH_SIZE
    with contextlib.ExitStack() as locks:
        # Whole-project scorers exclude each other and the slices; slices share the project lock.
        got = locks.enter_context(modeling.lock_held(modeling.LOCK_SCORING, project_id, shared=id_slice is not None))
        if got and id_slice is not None and model_version_id is not None:
            got = locks.enter_context(modeling.lock_held(-model_version_id, id_slice.index))
        if not got:
            report.busy = True
            return report
        # Each page's rows are written while the next page is scored (PostgreSQL, outside a transaction);
        # flushed before anything below counts or analyzes the rows, and on the way out.
        write, flush = locks.enter_context(prediction_writer())
        while True:
            champion = champion_get(project_id=project_id)
            if champion is None and model_version_id is None:
                # Before the first model: the new documents change the pool the queue's order is drawn from.
                report.cold_start = coldstart.cold_start_order_refresh(project_id=project_id, time_budget_s=budget)
                if not report.cold_start.get("remaining"):
                    return report
                report.remaining = True
                break
            if champion is None or (model_version_id is not None and champion.pk != model_version_id):
                report.stale = model_version_id is not None
                return report
            report.model_version_id = champion.pk
            if champion.pk != walking:  # a new champion: walk the whole project (or slice) again
                walking, cursor = champion.pk, (id_slice.last_id + 1 if id_slice is not None else None)
            batch, cursor = documents_unscored_page(
                champion,
                below=cursor,
                size=page_size,
                at_least=id_slice.first_id if id_slice is not None else None,
            )
            if cursor is None:  # walked past the oldest document (of the slice)
                flush()
                if id_slice is not None and champion_has_gaps(champion):
                    # other slices (or documents added since the split) are still to score
                    planner_statistics_refresh(model=Prediction, rows_written=report.scored)
                    return report
                _rescore_progress(champion, done=True)
                # The queue reads these rows next: a promotion's re-score counts every row of the version,
                # whichever call wrote them; any other pass what it wrote itself.
                written = champion.predictions.count() if run_id is not None else report.scored
                planner_statistics_refresh(model=Prediction, rows_written=written)
                return report
            if not batch:
                continue
            batch_started = time.monotonic()
            report.scored += documents_score(champion, batch, write=write)
            report.batches += 1
            page_size = next_page_size(page_size, len(batch), time.monotonic() - batch_started)
            out_of_time = time.monotonic() - started > budget
            if out_of_time:
                flush()  # the stop's progress and statistics count every row handed to the writer
            # Progress counts the version's predictions (O(N) on the index): every few seconds, not per batch;
            # between stops it may miss the page still being written.
            if out_of_time or time.monotonic() - shown >= PROGRESS_EVERY_S:
                _rescore_progress(champion)
                shown = time.monotonic()
            if out_of_time:
                report.remaining = True
                # Statistics from before the pass would keep the queue's ranking read off its partial
                # index until the pass ends, which at millions of documents is many continuations away.
                planner_statistics_refresh(model=Prediction, rows_written=report.scored)
                break
    if id_slice is not None and run_id is not None and model_version_id is not None:
        enqueue(TaskName.RESCORE_SLICE, args=(run_id, model_version_id, *dataclasses.astuple(id_slice)))
        return report
    name = TaskName.RESCORE_POOL if run_id is not None else TaskName.SCORE_PENDING
    args: tuple[Any, ...] = (run_id, model_version_id) if run_id is not None else (project_id,)
    enqueue(name, args=args)
    return report


def next_page_size(size: int, scored: int, seconds: float) -> int:
    """The next scoring page: twice as large while a full page takes under ``FAST_BATCH_S``, at most
    ``MAX_PAGE_BATCHES`` x ``SCORING_BATCH_SIZE``; half as large (down to ``SCORING_BATCH_SIZE``) when
    one is slower.

    Pages whose vectors are cached (a re-score after a promotion) grow: each page costs a few queries, a
    COPY and a commit whatever its size, which at 256 documents were a large share of a re-score. Pages
    the encoder has to run for (seconds for 256 documents on a CPU) stay small, so a task still stops
    near its time budget.
    """
    base = settings.SCORING_BATCH_SIZE
    if seconds >= FAST_BATCH_S:
        return max(base, size // 2)
    if scored < size:  # a page partly scored before: no evidence either way
        return size
    return min(size * 2, base * MAX_PAGE_BATCHES)


def documents_score(
    model_version: ModelVersion, batch: list[tuple[int, str]], *, write: PredictionWrite = predictions_write
) -> int:
    """Score (document id, text) pairs with ``model_version`` and upsert its predictions; rows written."""
    result = modeling.classifier_score(
        modeling.classifier_for(model_version), [text for _, text in batch], return_samples=True
    )
    return prediction_bulk_upsert(
        model_version=model_version,
        project=model_version.project,
        document_ids=[i for i, _ in batch],
        result=result,
        write=write,
    )


def model_version_predictions_refresh(model_version: ModelVersion) -> int | None:
    """Re-score every stored prediction of ``model_version`` (after its calibration changed).

    Returns the rows written, or None when a scorer holds the project's lock: a scorer already running
    loads the new artifact for its next batch, and the rows it wrote meanwhile keep the old
    temperature until the next re-score, which is why this yields instead of waiting.
    """
    with modeling.lock_held(modeling.LOCK_SCORING, model_version.project_id) as got:
        if not got:
            return None
        ids = list(
            Prediction.objects.filter(model_version=model_version)
            .order_by("-document_id")
            .values_list("document_id", flat=True)
        )
        done = 0
        for start in range(0, len(ids), settings.SCORING_BATCH_SIZE):
            chunk = ids[start : start + settings.SCORING_BATCH_SIZE]
            texts = dict(Document.objects.filter(pk__in=chunk).values_list("id", "text"))
            batch = [(i, texts[i]) for i in chunk if i in texts]
            if batch:
                done += documents_score(model_version, batch)
        return done


def model_version_rescore(*, run_id: int, model_version_id: int) -> ScoreReport:
    """Re-score the pool for a newly promoted champion (``RESCORE_POOL``); raises ScoringBusyError."""
    model_version = ModelVersion.objects.filter(pk=model_version_id).first()
    if model_version is None:
        return ScoreReport(project_id=0, model_version_id=model_version_id, stale=True)
    split = rescore_split(model_version=model_version, run_id=run_id)
    if split is not None:
        return split
    report = project_score_pending(
        project_id=model_version.project_id, model_version_id=model_version_id, run_id=run_id
    )
    if report.busy:
        raise ScoringBusyError(f"project {model_version.project_id} is being scored; retry")
    return report


def rescore_split(*, model_version: ModelVersion, run_id: int) -> ScoreReport | None:
    """Split a promotion's re-score into ``SCORING_SLICES`` RESCORE_SLICE tasks; None when it stays whole.

    Whole when the setting is 1, the pool has under ``SCORING_SLICE_MIN_DOCS`` documents a slice, or the
    model is no longer the champion. The slices are disjoint id ranges: no document is scored by two
    of them, and a redelivered RESCORE_POOL only sends slices that find their documents scored.
    """
    project_id = model_version.project_id
    wanted = min(
        settings.SCORING_SLICES,
        Document.objects.filter(project_id=project_id).count() // max(settings.SCORING_SLICE_MIN_DOCS, 1),
    )
    champion = champion_get(project_id=project_id)
    if wanted < 2 or champion is None or champion.pk != model_version.pk:
        return None
    slices = documents_id_slices(project_id=project_id, slices=wanted)
    for index, (first_id, last_id) in enumerate(slices):
        enqueue(TaskName.RESCORE_SLICE, args=(run_id, model_version.pk, index, first_id, last_id))
    return ScoreReport(project_id=project_id, model_version_id=model_version.pk, slices=len(slices))


def model_version_rescore_slice(*, run_id: int, model_version_id: int, id_slice: IdSlice) -> ScoreReport:
    """One slice of a split re-score (``RESCORE_SLICE``); raises ScoringBusyError while another scorer
    holds the project exclusively or the same slice (a redelivered message)."""
    model_version = ModelVersion.objects.filter(pk=model_version_id).first()
    if model_version is None:
        return ScoreReport(project_id=0, model_version_id=model_version_id, stale=True)
    report = project_score_pending(
        project_id=model_version.project_id, model_version_id=model_version_id, run_id=run_id, id_slice=id_slice
    )
    if report.busy:
        raise ScoringBusyError(f"project {model_version.project_id} slice {id_slice.index} is being scored; retry")
    return report


# --- reconciliation ----------------------------------------------------------------------------


def scoring_reconcile() -> dict[str, Any]:
    """Beat: enqueue scoring for every project with documents its champion has not scored.

    Also returns lapsed leases to the pool. A lost message therefore delays scoring by one beat
    interval at most; it never loses it.
    """
    enqueued: list[int] = []
    expired = 0
    for project in Project.objects.all():
        expired += assignments_expire(project=project)
        champion = champion_get(project_id=project.pk)
        if champion is not None and champion_has_gaps(champion):
            enqueue(TaskName.SCORE_PENDING, args=(project.pk,))
            enqueued.append(project.pk)
    if enqueued:
        log.info("reconcile: scoring enqueued for projects %s", enqueued)
    return {"scoring_enqueued": enqueued, "assignments_expired": expired}
