"""Holdout rows to arrays for the temperature fit, and the kept champion's refit after a rejection.

The math (the holdout fit shrunk toward the pool's temperature) is ``modelsvc.holdout``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from django.utils import timezone

from labeling.labelspace import LabelSpace, label_space
from labeling.models import AcquisitionStrategy, ModelStatus, ModelVersion, Project, Split
from labeling.selectors.models import champion_get, majority_labels
from labeling.selectors.queue import random_draws, selection_draws
from labeling.services import modeling
from labeling.services.scoring import model_version_predictions_refresh
from modelsvc.acquisition import strategy_get
from modelsvc.calibration import importance_weights
from modelsvc.fitting import TrainResult
from modelsvc.holdout import calibration_usable, holdout_temperature_fit, pool_prior_sd
from modelsvc.model import CalibrationSet, Classifier

#: A rejected challenger's run refits the champion's temperature only if it moves by more than this.
RECALIBRATE_MIN_CHANGE = 0.03

#: (document id, text, majority label) of the labeled holdout, as ``majority_labels`` returns them.
HoldoutRows = list[tuple[int, str, str]]


def holdout_prior_sd(project: Project) -> float:
    """The project's prior spread for the holdout temperature fit.

    Tight when the pool's temperature estimates the pool: labels drawn at random, or drawn by a
    stochastic strategy whose fit is importance-weighted back to the pool (``pool_calibration_weights``).
    """
    representative = project.acquisition_strategy == AcquisitionStrategy.RANDOM
    return pool_prior_sd(random_pool=representative or strategy_get(project.acquisition_strategy).power is not None)


def pool_calibration_weights(*, document_ids: list[int]) -> np.ndarray | None:
    """Importance weights (N,) of labeled pool documents for the temperature fit; None: no draw recorded.

    A document leased by a stochastic draw weighs 1 / (pool size x its selection probability); one
    with no recorded draw (cold start, or labeled under a deterministic strategy) counts as drawn
    uniformly (``modelsvc.calibration.importance_weights``).
    """
    draws = selection_draws(document_ids=document_ids)
    if not draws:
        return None
    missing = (math.nan, math.nan)
    probability = np.array([draws.get(d, missing)[0] for d in document_ids], dtype=np.float64)
    pool_size = np.array([draws.get(d, missing)[1] for d in document_ids], dtype=np.float64)
    return importance_weights(probability, pool_size)


def random_calibration_set(
    result: TrainResult, labeled: HoldoutRows, *, space: LabelSpace, tuned: bool
) -> CalibrationSet | None:
    """The run's randomly drawn training labels, out of fold, for the holdout's temperature fit; None if none.

    ``labeled``: the (document id, text, label) rows the run trained on, in the order of ``result``.
    Only a frozen encoder's out-of-fold samples are honest: tuned layers were fitted on every label, so a run
    on them (or without cross-fitting) gives no set.
    """
    if tuned or result.oof_logits is None:
        return None
    drawn = random_draws(document_ids=[doc_id for doc_id, _, _ in labeled])
    rows = [i for i, (doc_id, _, _) in enumerate(labeled) if doc_id in drawn]
    if not rows:
        return None
    return CalibrationSet(logits=result.oof_logits[rows], labels=space.encode([labeled[i][2] for i in rows]))


def holdout_arrays(project: Project, classifier: Classifier, holdout: HoldoutRows) -> tuple[np.ndarray, np.ndarray]:
    """The holdout as the classifier sees it: head inputs (N, H) (the encoder's vectors from its cache, with a
    hybrid model's TF-IDF block beside them), labels (N,) int."""
    encoder = modeling.classifier_encoder(classifier)
    cache = modeling.embedding_cache_for(encoder.encoder_id)
    texts = [text for _, text, _ in holdout]
    embeddings = encoder.encode(texts, cache=cache)
    space = label_space(project.task_type, classifier.label_names)
    return classifier.head_inputs(texts, embeddings), space.encode([label for _, _, label in holdout])


def champion_recalibrate(*, project: Project, holdout: HoldoutRows | None = None) -> str | None:
    """Refit the champion's temperature on the current labeled holdout; a note of what changed, or None.

    A champion keeps the temperature fitted when it was trained (on the holdout of that time) for as
    long as the gate rejects its challengers, which can be many rounds. After a rejection the holdout
    has grown, so the same ``holdout_temperature_fit`` runs again on all of it. Nothing changes unless
    the holdout has new labels and the temperature moves by more than ``RECALIBRATE_MIN_CHANGE``
    (relative): then the champion gets a new artifact (same head, new temperature; the old artifact
    stays for what still references it) and its stored predictions are re-scored with it.
    """
    champion = champion_get(project_id=project.pk)
    if champion is None:
        return None
    if holdout is None:
        holdout = majority_labels(project=project, split=Split.HOLDOUT)
    count = len(holdout)
    if count <= champion.calibration.get("n_temperature_holdout", 0):
        return None
    current = modeling.classifier_for(champion)
    truth = label_space(project.task_type, current.label_names).encode([label for _, _, label in holdout])
    if not calibration_usable(current, truth):  # the holdout with the champion's random draws
        return None
    embeddings, y = holdout_arrays(project, current, holdout)
    refit = dataclasses.replace(current, calibration=dict(current.calibration))  # the head is shared, unchanged
    changed = holdout_temperature_fit(
        classifier=refit, embeddings=embeddings, y=y, prior_sd=holdout_prior_sd(project), seed=project.seed
    )
    if changed is None or abs(np.log(refit.temperature / current.temperature)) < np.log1p(RECALIBRATE_MIN_CHANGE):
        return None
    name = f"project{project.pk}-v{champion.version}-holdout{count}"
    location, digest = modeling.artifact_save(refit, name)
    calibration = {**champion.calibration, **changed, "recalibrated_at": timezone.now().isoformat()}
    updated = ModelVersion.objects.filter(
        pk=champion.pk, status=ModelStatus.CHAMPION, artifact_path=champion.artifact_path
    ).update(artifact_path=location, artifact_digest=digest, calibration=calibration)
    if not updated:
        return None  # promoted away or refit by another run meanwhile
    champion.refresh_from_db()
    rescored = model_version_predictions_refresh(champion)
    return (
        f"the champion v{champion.version}'s temperature was refit on {count} holdout labels: "
        f"{current.temperature:.3f} -> {refit.temperature:.3f}"
        + (f", {rescored} stored predictions re-scored" if rescored is not None else "")
    )
