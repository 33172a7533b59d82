"""Fitting a multi-label (sigmoid) head on document vectors: ``train_multilabel_embeddings``.

The same cross-fitting as single-label (``modelsvc.crossfit``): K folds, K fold heads trained in one
batched loop with binary cross-entropy summed over labels, early-stopped per fold on their own fold.
From the out-of-fold logits of every labeled item come the per-label temperatures, the per-label
thresholds and the reported metrics (``modelsvc.multilabel``); the K heads are the deployed ensemble.
With fewer than ``2 * crossfit.MIN_PER_CLASS`` items one head trains on all of them for a fixed epoch
budget, with temperature 1 and thresholds 0.5 per label (nothing held out to fit them on).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.crossfit import (
    deployed_config,
    draws_per_member,
    fit_fold_heads,
    multilabel_fold_assignment,
    multilabel_n_folds,
    out_of_fold_logits,
)
from modelsvc.encoder import ProgressFn
from modelsvc.fitting import FIXED_EPOCHS_WITHOUT_VALIDATION, TrainingError, TrainResult, single_thread
from modelsvc.model import Classifier, StochasticHead, build_head
from modelsvc.multilabel import (
    DEFAULT_THRESHOLD,
    choose_thresholds,
    evaluate_multilabel,
    label_temperatures_choose,
    summarize_multilabel,
)


def targets_matrix(labels: Any, n_labels: int) -> np.ndarray:
    """(N, C) float32 0/1 targets; TrainingError unless labels is such a matrix."""
    y = np.asarray(labels, dtype=np.float32)
    if y.ndim != 2 or y.shape[1] != n_labels:
        raise TrainingError(f"multi-label targets must have shape (N, {n_labels}), got {y.shape}")
    if not np.isin(y, (0.0, 1.0)).all():
        raise TrainingError("multi-label targets must be 0/1")
    return y


def _fit_all(
    x_np: np.ndarray, y: np.ndarray, model_config: ModelConfig, train_config: TrainConfig
) -> tuple[StochasticHead, list[dict[str, float]]]:
    """One head (n_members members) on every item for a fixed epoch budget: no validation part exists."""
    x = torch.as_tensor(np.ascontiguousarray(x_np, dtype=np.float32))
    yt = torch.as_tensor(y)
    m = model_config.n_members
    head = build_head(model_config, x.shape[1], y.shape[1])
    head.set_standardization(x)
    opt = torch.optim.AdamW(head.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay)
    gen = torch.Generator().manual_seed(train_config.seed)
    history: list[dict[str, float]] = []
    for epoch in range(min(train_config.max_epochs, FIXED_EPOCHS_WITHOUT_VALIDATION)):
        head.train()
        perm = torch.randperm(len(yt), generator=gen)
        total = 0.0
        for s in range(0, len(perm), train_config.batch_size):
            idx = perm[s : s + train_config.batch_size]
            logits = head(x[idx], k=m)  # (B, M, C)
            target = yt[idx][:, None, :].expand_as(logits)
            loss = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append({"epoch": float(epoch), "train_loss": total / len(yt)})
    head.eval()
    return head, history


def train_multilabel_embeddings(
    embeddings: np.ndarray,
    targets: Any,
    *,
    label_names: Sequence[str],
    encoder_id: str,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train a sigmoid head on vectors (N, H) and 0/1 targets (N, C); see the module docstring.

    ``TrainResult.oof_probs`` holds the calibrated out-of-fold probabilities (N, C) (None without folds).
    """
    model_config = dataclasses.replace(model_config or ModelConfig(), output="sigmoid")
    train_config = train_config or TrainConfig()
    label_names = [str(n) for n in label_names]
    if len(set(label_names)) != len(label_names) or len(label_names) < 2:
        raise TrainingError("label_names must hold at least 2 distinct names")
    y = targets_matrix(targets, len(label_names))
    if len(y) != len(embeddings):
        raise TrainingError(f"{len(embeddings)} texts but {len(y)} label sets")
    if train_config.fine_tune != "frozen":
        raise TrainingError("multi-label training tunes the head only: fine_tune must be 'frozen'")
    k = multilabel_n_folds(len(y), train_config.folds)
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]), single_thread():
        torch.manual_seed(train_config.seed)
        if k:
            fold = multilabel_fold_assignment(y, k, np.random.default_rng(train_config.seed + 1))
            head, history = fit_fold_heads(embeddings, y, fold, len(label_names), model_config, train_config, progress)
        else:
            head, history = _fit_all(embeddings, y, model_config, train_config)
    t1 = time.perf_counter()
    config = deployed_config(model_config, head.n_members) if k else model_config
    clf = Classifier(config=config, label_names=list(label_names), encoder_id=encoder_id, head=head)
    n = int(len(y))
    if not k:
        clf.label_temperatures = [1.0] * len(label_names)
        clf.thresholds = [DEFAULT_THRESHOLD] * len(label_names)
        clf.calibration = {
            "method": "none",
            "n": n,
            "skipped": f"too few labeled items ({n}) to cross-fit: temperature 1 and threshold 0.5 per label",
        }
        return TrainResult(clf, {}, clf.calibration, history, {"train": n}, {"fit": t1 - t0})
    draws = draws_per_member(model_config.samples, model_config.n_members)
    logits = out_of_fold_logits(clf.sample_logits(embeddings, k=head.n_members * draws), fold, model_config.n_members)
    temperatures, temp_records = label_temperatures_choose(logits, y, fold)
    oof = summarize_multilabel(logits, temperatures=temperatures, thresholds=None, embeddings=embeddings)
    thresholds, threshold_records = choose_thresholds(oof.probs, y)
    clf.label_temperatures, clf.thresholds = temperatures, thresholds
    metrics = evaluate_multilabel(oof.probs_uncalibrated, oof.probs, y, thresholds, label_names)
    metrics["split"] = "out_of_fold"
    # Thresholds chosen on the same out-of-fold items make these F1s a little optimistic; the blind
    # holdout (``modelsvc.holdout``) is the unbiased figure.
    metrics["thresholds_fitted_on_same_items"] = True
    calibration: dict[str, Any] = {
        "method": "cross_fitted",
        "folds": k,
        "n": n,
        "n_temperature": n,
        "temperatures": temperatures,
        "temperature_choices": dict(zip(label_names, temp_records, strict=True)),
        "thresholds": thresholds,
        "threshold_choices": dict(zip(label_names, threshold_records, strict=True)),
    }
    clf.calibration = calibration
    clf.metrics = metrics
    if progress is not None:
        progress("calibrate", 1.0)
    sizes = {"train": n, "validation": n, "calibration": n, "folds": k}
    timings = {"fit": t1 - t0, "calibrate": time.perf_counter() - t1}
    return TrainResult(clf, metrics, calibration, history, sizes, timings, oof_probs=oof.probs)
