"""Fitting on document vectors: the shared helpers of every training path, and ``train_embeddings``.

``modelsvc.training.train`` (from texts, frozen encoder) and ``modelsvc.finetune`` (encoder layers
tuned too) both build on this module; it imports neither, so modelsvc has no import cycle.

Default (``TrainConfig.folds`` >= 2, see ``modelsvc.crossfit``): K stratified folds, K fold heads
trained in one batched loop, temperature / error mapping / metrics from the out-of-fold
predictions of every labeled item, the K heads deployed as the ensemble.

With ``folds=0``, or when a class has fewer than 3 labels, the single-split path runs: the labeled data
is split (seeded, stratified) into a *fit* part and a *calibration* part; the fit part is split
again into train / validation for early stopping. Classes with fewer than 3 examples are kept
entirely in the fit part, so a cold start with 2 labels per class trains (with a fixed epoch
budget and temperature 1) instead of failing.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from modelsvc.calibration import (
    evaluate_predictions,
    fit_error_mapping,
    fit_temperature,
    temperature_choose,
    tempered_samples,
)
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.crossfit import (
    deployed_config,
    draws_per_member,
    fit_fold_heads,
    fold_assignment,
    n_folds,
    out_of_fold_logits,
)
from modelsvc.encoder import ProgressFn
from modelsvc.features import (
    SPARSE_C_GRID,
    SPARSE_WEIGHT_GRID,
    SparseDesign,
    SparsePath,
    fit_linear,
    linear_log_proba,
)
from modelsvc.inference import score_embeddings, summarize_logits
from modelsvc.model import Classifier, StochasticHead, build_head, eval_mode

#: Epochs used when no validation part can be held out (tiny data).
FIXED_EPOCHS_WITHOUT_VALIDATION = 200


class TrainingError(ValueError):
    """The labeled data cannot be trained on (empty, unknown label, ...)."""


@dataclass
class TrainResult:
    classifier: Classifier
    metrics: dict[str, Any]  # out-of-fold (or calibration-part) metrics, or {} if none
    calibration: dict[str, Any]  # temperature, error mapping, sizes
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: train_loss, val_loss
    split_sizes: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: encode, fit, calibrate
    # (N, C) calibrated out-of-fold probabilities of the N training items, in the order of the labels
    # given to train: each from fold heads that never saw the item (what modelsvc.noise ranks labels
    # by). None on the single-split path, where most items were trained on.
    oof_probs: np.ndarray | None = None
    # (N, S, C) the uncalibrated out-of-fold MC samples behind ``oof_probs`` (S = draws of one fold's members);
    # what a ``CalibrationSet`` keeps of the randomly drawn items. None where ``oof_probs`` is None.
    oof_logits: np.ndarray | None = None


def stratified_split(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out); each class with >= 3 items gives round(fraction * n) (>= 1) items."""
    keep: list[np.ndarray] = []
    held: list[np.ndarray] = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_out = 0
        if fraction > 0 and len(idx) >= 3:
            n_out = min(max(1, int(round(fraction * len(idx)))), len(idx) - 2)
        held.append(idx[:n_out])
        keep.append(idx[n_out:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held)).astype(np.int64)


def encode_labels(labels: Sequence[Any], label_names: Sequence[str]) -> np.ndarray:
    """Map labels (names or int indices) to indices (N,); unknown labels raise TrainingError."""
    index = {name: i for i, name in enumerate(label_names)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, lab in enumerate(labels):
        if isinstance(lab, int | np.integer) and not isinstance(lab, bool) and str(lab) not in index:
            if not 0 <= int(lab) < len(label_names):
                raise TrainingError(f"label index {lab} out of range for {len(label_names)} labels")
            out[i] = int(lab)
        elif str(lab) in index:
            out[i] = index[str(lab)]
        else:
            raise TrainingError(f"unknown label {lab!r} (known: {', '.join(label_names)})")
    return out


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency ("balanced") class weights (C,); 0 for classes absent from y."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    return torch.as_tensor(w, dtype=torch.float32)


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Run the block on one torch thread: the head's matmuls are tiny, so thread sync costs more than it gains."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def fit_head(
    embeddings: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    progress: ProgressFn | None = None,
) -> tuple[StochasticHead, list[dict[str, float]], dict[str, int], np.ndarray]:
    """Fit a StochasticHead on vectors (N, H) and labels (N,); early stopping on validation loss."""
    rng = np.random.default_rng(train_config.seed)
    tr, va = stratified_split(y, train_config.validation_fraction, rng)
    x = torch.as_tensor(np.ascontiguousarray(embeddings, dtype=np.float32))
    yt = torch.as_tensor(y, dtype=torch.long)
    head = build_head(model_config, x.shape[1], n_classes)
    head.set_standardization(x[tr])
    weights = class_weights(y[tr], n_classes) if train_config.class_weights else None
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(head.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay)
    gen = torch.Generator().manual_seed(train_config.seed)
    m = model_config.n_members
    epochs = train_config.max_epochs if len(va) else min(train_config.max_epochs, FIXED_EPOCHS_WITHOUT_VALIDATION)
    best_loss, best_state, since_best = float("inf"), copy.deepcopy(head.state_dict()), 0
    history: list[dict[str, float]] = []
    tr_t = torch.as_tensor(tr)
    for epoch in range(epochs):
        head.train()
        perm = tr_t[torch.randperm(len(tr_t), generator=gen)]
        total = 0.0
        for s in range(0, len(perm), train_config.batch_size):
            idx = perm[s : s + train_config.batch_size]
            logits = head(x[idx], k=m)  # (B, M, C): each member once, dropout on
            loss = loss_fn(logits.reshape(-1, n_classes), yt[idx].repeat_interleave(m))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        record = {"epoch": float(epoch), "train_loss": total / max(len(tr), 1)}
        if len(va):
            with torch.no_grad(), eval_mode(head):
                probs = torch.softmax(head(x[va], k=m), -1).mean(1)  # (V, C)
                val_loss = float(nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), yt[va]))
            record["val_loss"] = val_loss
            if val_loss < best_loss - 1e-4:
                best_loss, best_state, since_best = val_loss, copy.deepcopy(head.state_dict()), 0
            else:
                since_best += 1
        history.append(record)
        if progress is not None:
            progress("fit", (epoch + 1) / epochs)
        if len(va) and since_best >= train_config.patience:
            break
    if len(va):
        head.load_state_dict(best_state)
    head.eval()
    return head, history, {"train": int(len(tr)), "validation": int(len(va))}, va


def train_embeddings(
    embeddings: np.ndarray,
    labels: Sequence[Any],
    *,
    label_names: Sequence[str],
    encoder_id: str,
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    calibration_weights: np.ndarray | None = None,
    sparse: SparseDesign | None = None,
) -> TrainResult:
    """``train`` on precomputed document vectors (N, H) (e.g. from the cache).

    ``calibration_weights`` (N,): importance weights of the labels in the temperature fit and its
    cross-fitted check (``calibration.importance_weights``); None weighs each label once. The heads
    themselves train unweighted.

    ``sparse``: the labeled texts' TF-IDF rows, required exactly when ``model_config.features`` is
    ``"sparse"`` (``train`` builds it): the sparse path is cross-fitted on the head's folds beside it
    (``sparse_path_fit``).
    """
    model_config = model_config or ModelConfig()
    train_config = train_config or TrainConfig()
    names = [str(n) for n in label_names]
    if len(set(names)) != len(names) or len(names) < 2:
        raise TrainingError("label_names must hold at least 2 distinct names")
    if len(labels) == 0:
        raise TrainingError("no labeled documents to train on")
    if len(labels) != len(embeddings):
        raise TrainingError(f"{len(embeddings)} texts but {len(labels)} labels")
    if train_config.fine_tune != "frozen":
        raise TrainingError(
            f"fine_tune={train_config.fine_tune!r} trains encoder layers, so it needs the texts: use train(...)"
        )
    y = encode_labels(labels, names)
    weights = None if calibration_weights is None else np.asarray(calibration_weights, dtype=np.float64)
    if weights is not None and weights.shape != y.shape:
        raise TrainingError(f"{len(y)} labels but {weights.shape[0]} calibration weights")
    if (model_config.features == "sparse") != (sparse is not None):
        raise TrainingError(
            f"features={model_config.features!r}: the sparse path's TF-IDF rows are given exactly when features is "
            "'sparse' (train(...) builds them from the texts)"
        )
    if sparse is not None and sparse.x.shape[0] != len(y):
        raise TrainingError(f"{len(y)} labels but {sparse.x.shape[0]} TF-IDF rows")
    k = n_folds(y, train_config.folds)
    if k:
        return _train_cross_fitted(
            embeddings, y, k, names, encoder_id, model_config, train_config, progress, weights, sparse
        )
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        rng = np.random.default_rng(train_config.seed + 1)
        fit_idx, cal_idx = stratified_split(y, train_config.calibration_fraction, rng)
        with single_thread():
            head, history, sizes, val_idx = fit_head(
                embeddings[fit_idx], y[fit_idx], len(names), model_config, train_config, progress
            )
    t1 = time.perf_counter()
    clf = Classifier(config=model_config, label_names=names, encoder_id=encoder_id, head=head)
    val = fit_idx[val_idx]
    calibration, metrics = calibrate_held_out(
        clf, embeddings[cal_idx], y[cal_idx], embeddings[val], y[val], train_config,
        weights=None if weights is None else (weights[cal_idx], weights[val]),
    )
    if progress is not None:
        progress("calibrate", 1.0)
    sizes["calibration"] = int(len(cal_idx))
    if sparse is not None:  # too few labels to cross-fit the path: it is carried, switched off
        clf.features = sparse_path_off(sparse, len(names))
        calibration["sparse_path"] = {"weight": 0.0, "skipped": "too few labels per class to cross-fit the sparse path"}
    timings = {"fit": t1 - t0, "calibrate": time.perf_counter() - t1}
    return TrainResult(clf, metrics, calibration, history, sizes, timings)


def calibrate_held_out(
    clf: Classifier,
    cal_embeddings: np.ndarray,
    y_cal: np.ndarray,
    val_embeddings: np.ndarray,
    y_val: np.ndarray,
    train_config: TrainConfig,
    *,
    weights: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Single-split calibration: temperature, error mapping and metrics from held-out vectors.

    cal_embeddings (Nc, H) with labels (Nc,): never trained on; val_embeddings (Nv, H): only chose the
    stopping epoch, so they join the temperature fit when ``temperature_on_validation``. ``weights``:
    importance weights of the (calibration, validation) items in the temperature fit. Sets the
    classifier's temperature, calibration and metrics; returns (calibration, metrics).
    """
    calibration: dict[str, Any] = {"temperature": 1.0, "n": int(len(y_cal)), "error_mapping": None}
    metrics: dict[str, Any] = {}
    if len(y_cal):
        # The temperature is one scalar: fit it on the calibration part plus the validation part
        # (which only chose the stopping epoch), so small label sets still calibrate stably.
        t_w = None
        if train_config.temperature_on_validation:
            t_emb, t_y = np.concatenate([cal_embeddings, val_embeddings]), np.concatenate([y_cal, y_val])
            t_w = None if weights is None else np.concatenate(weights)
        else:
            t_emb, t_y = cal_embeddings, y_cal
            t_w = None if weights is None else weights[0]
        logits = clf.sample_logits(t_emb)
        # Seeded groups for the cross-fitted check of the temperature (at most 5, at least 2 items each).
        groups = np.random.default_rng(train_config.seed + 2).permutation(len(t_y)) % max(1, min(5, len(t_y) // 2))
        choice = temperature_choose(logits, t_y, groups, weights=t_w)
        calibration["temperature"] = choice.temperature
        calibration["temperature_choice"] = choice.as_record()
        calibration["n_temperature"] = int(len(t_y))
        clf.temperature = calibration["temperature"]
        res = score_embeddings(clf, cal_embeddings)
        calibration["error_mapping"] = fit_error_mapping(
            res.entropy, res.predicted != y_cal, train_config.error_mapping
        )
        metrics = evaluate_predictions(res.probs_uncalibrated, res.probs, y_cal, res.uncertainty())
        metrics["split"] = "calibration"
    else:
        calibration["skipped"] = "too few labels per class to hold out a calibration part"
    clf.calibration = calibration
    clf.metrics = {k: v for k, v in metrics.items() if not k.startswith("reliability")}
    return calibration, metrics


def _train_cross_fitted(
    embeddings: np.ndarray,
    y: np.ndarray,
    k: int,
    names: list[str],
    encoder_id: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    progress: ProgressFn | None,
    weights: np.ndarray | None = None,
    sparse: SparseDesign | None = None,
) -> TrainResult:
    """K fold heads; temperature, error mapping and metrics from all N out-of-fold predictions.

    ``weights`` (N,): importance weights of the out-of-fold items in the temperature choice.
    ``sparse``: the sparse path, cross-fitted on the same folds; its out-of-fold offsets join the
    heads' out-of-fold samples before the temperature is chosen.
    """
    t0 = time.perf_counter()
    fold = fold_assignment(y, k, np.random.default_rng(train_config.seed + 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        with single_thread():
            head, history = fit_fold_heads(embeddings, y, fold, len(names), model_config, train_config, progress)
    t1 = time.perf_counter()
    config = deployed_config(model_config, head.n_members)
    clf = Classifier(config=config, label_names=names, encoder_id=encoder_id, head=head)
    per_fold = model_config.n_members
    # Each document's samples come only from its own fold's members, which never trained on it.
    draws = draws_per_member(model_config.samples, per_fold)
    logits = out_of_fold_logits(clf.sample_logits(embeddings, k=head.n_members * draws), fold, per_fold)
    path_record = None
    if sparse is not None:
        path, offsets, path_record = sparse_path_fit(sparse, y, fold, logits, len(names), weights=weights)
        logits = logits + offsets[:, None, :]
        clf.features = path
    # Applied only when a temperature fitted on the other folds lowers each fold's NLL (cross-fitted).
    # Under a stochastic acquisition the weights make both NLLs estimates over the pool.
    choice = temperature_choose(logits, y, fold, weights=weights)
    temperature = choice.temperature
    oof = summarize_logits(logits, temperature=temperature, error_mapping=None, embeddings=embeddings)
    calibration: dict[str, Any] = {
        "method": "cross_fitted",
        "folds": k,
        "temperature": temperature,
        "temperature_choice": choice.as_record(),
        "n": int(len(y)),
        "n_temperature": int(len(y)),
        "error_mapping": fit_error_mapping(oof.entropy, oof.predicted != y, train_config.error_mapping),
    }
    if path_record is not None:
        calibration["sparse_path"] = path_record
    clf.temperature = temperature
    metrics = evaluate_predictions(oof.probs_uncalibrated, oof.probs, y, oof.uncertainty())
    metrics["split"] = "out_of_fold"
    clf.calibration = calibration
    clf.metrics = {key: v for key, v in metrics.items() if not key.startswith("reliability")}
    if progress is not None:
        progress("calibrate", 1.0)
    n = int(len(y))
    sizes = {"train": n, "validation": n, "calibration": n, "folds": k}
    timings = {"fit": t1 - t0, "calibrate": time.perf_counter() - t1}
    return TrainResult(
        clf, metrics, calibration, history, sizes, timings, oof_probs=oof.probs, oof_logits=logits
    )


def nll_at_fitted_temperature(sample_logits: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean (weighted) NLL of (N, S, C) samples at the temperature fitted on them."""
    probs = tempered_samples(sample_logits, fit_temperature(sample_logits, y, weights)).mean(1)
    per_item = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))
    return float(per_item.mean() if weights is None else (per_item * weights).sum() / weights.sum())


def cross_fitted_log_proba(x: Any, y: np.ndarray, fold: np.ndarray, c: float, n_classes: int) -> np.ndarray:
    """(N, C) log-probabilities of a logistic regression (strength 1 / c) on rows x (N, V), each fold's rows
    from a regression fitted on the other folds only."""
    out = np.empty((len(y), n_classes))
    for f in np.unique(fold):
        held = fold == f
        coef, intercept = fit_linear(x[~held], y[~held], c, n_classes)
        out[held] = linear_log_proba(x[held], coef, intercept)
    return out


def sparse_path_off(sparse: SparseDesign, n_classes: int) -> SparsePath:
    """A sparse path carried with w = 0 (zero coefficients): the head alone decides."""
    return SparsePath(
        tfidf=sparse.tfidf,
        coef=np.zeros((n_classes, sparse.x.shape[1]), dtype=np.float32),
        intercept=np.zeros(n_classes, dtype=np.float32),
        weight=0.0,
    )


def sparse_path_fit(
    sparse: SparseDesign,
    y: np.ndarray,
    fold: np.ndarray,
    head_oof: np.ndarray,
    n_classes: int,
    *,
    weights: np.ndarray | None = None,
) -> tuple[SparsePath, np.ndarray, dict[str, Any]]:
    """The sparse path beside the head: (path, out-of-fold offsets (N, C), record).

    A logistic regression on the TF-IDF rows is cross-fitted on the head's folds (``fold`` (N,)), so
    every label's offsets come from a regression that never saw it, as its head samples ``head_oof``
    (N, S, C) do. (C, w) over ``SPARSE_C_GRID`` x ``SPARSE_WEIGHT_GRID`` minimise the out-of-fold
    (``weights``-weighted) NLL of head + w x log-probabilities at its fitted temperature; w = 0 (the
    head alone) wins ties. The deployed regression is refitted on all labels with the chosen C.
    """
    x = sparse.x
    head_alone = nll_at_fitted_temperature(head_oof, y, weights)
    best: tuple[float, float | None, float, np.ndarray] = (head_alone, None, 0.0, np.zeros((len(y), n_classes)))
    tried: list[dict[str, float]] = []
    for c in SPARSE_C_GRID:
        lp = cross_fitted_log_proba(x, y, fold, c, n_classes)
        for w in SPARSE_WEIGHT_GRID:
            if w == 0:
                continue
            nll = nll_at_fitted_temperature(head_oof + w * lp[:, None, :], y, weights)
            tried.append({"C": c, "weight": w, "nll": round(nll, 5)})
            if nll < best[0] - 1e-9:
                best = (nll, c, w, lp)
    nll, c_best, w_best, lp_best = best
    record = {
        "C": c_best,
        "weight": w_best,
        "nll_out_of_fold": round(nll, 5),
        "nll_head_alone": round(head_alone, 5),
        "tried": tried,
        "rule": "C and w minimise the out-of-fold NLL at its fitted temperature; w = 0 keeps the head alone",
    }
    if c_best is None:
        return sparse_path_off(sparse, n_classes), np.zeros((len(y), n_classes), dtype=np.float32), record
    coef, intercept = fit_linear(x, y, c_best, n_classes)
    path = SparsePath(tfidf=sparse.tfidf, coef=coef, intercept=intercept, weight=w_best)
    return path, (w_best * lp_best).astype(np.float32), record
