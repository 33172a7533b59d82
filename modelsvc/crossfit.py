"""Cross-fitting: K fold heads trained at once, out-of-fold (OOF) predictions for calibration.

The labeled set is split into K stratified folds. Head ``f`` (``n_members`` members of it) trains
on the other K-1 folds and early-stops on fold ``f``. All K heads live in ONE StochasticHead with
K * n_members stacked members, so they train in one batched loop: each (document, member) loss
term is masked out when the document sits in that member's own fold. Every labeled document then
has predictions from heads that never saw it (OOF), and the temperature and error mapping are
fitted on all N of them instead of a 20 % calibration split. The K heads stay as the deployed
ensemble (deep-ensemble disagreement plus MC dropout), so no labeled item is wasted.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from torch import nn

from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.encoder import ProgressFn
from modelsvc.model import StochasticHead, build_head, eval_mode

#: A class needs this many labels before its items are spread over folds (else: no calibration).
MIN_PER_CLASS = 3


def n_folds(y: np.ndarray, requested: int) -> int:
    """K = min(requested, smallest class count among the classes present); 0 when below MIN_PER_CLASS."""
    counts = np.bincount(y)
    smallest = int(counts[counts > 0].min()) if len(y) else 0
    if requested < 2 or smallest < MIN_PER_CLASS:
        return 0
    return min(requested, smallest)


def fold_assignment(y: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold id (N,) in [0, k): every class is dealt round-robin over the folds in a seeded order."""
    fold = np.empty(len(y), dtype=np.int64)
    start = 0  # carry the dealing position across classes so fold sizes stay within one item
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        fold[idx] = (start + np.arange(len(idx))) % k
        start = (start + len(idx)) % k
    return fold


def member_folds(k: int, members_per_fold: int) -> np.ndarray:
    """Fold of each stacked member (K * M,): members ``f*M .. f*M+M-1`` belong to fold f."""
    return np.arange(k * members_per_fold) // members_per_fold


def fit_fold_heads(
    embeddings: np.ndarray,
    y: np.ndarray,
    fold: np.ndarray,
    n_classes: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    progress: ProgressFn | None = None,
) -> tuple[StochasticHead, list[dict[str, float]]]:
    """Train K fold heads in one batched loop; return the head with K * M members and the history.

    embeddings (N, H), y (N,) (or (N, C) 0/1 targets when ``model_config.output`` is sigmoid),
    fold (N,). Member j trains on documents whose fold differs from
    ``member_folds[j]`` and keeps its weights from the epoch with the lowest NLL on its own fold.
    """
    k = int(fold.max()) + 1
    m = model_config.n_members
    total = k * m
    x = torch.as_tensor(np.ascontiguousarray(embeddings, dtype=np.float32))
    sigmoid = model_config.output == "sigmoid"  # y (N, C) 0/1 targets; else y (N,) class indices
    yt = torch.as_tensor(y, dtype=torch.float32 if sigmoid else torch.long)
    config = deployed_config(model_config, total)
    head = build_head(config, x.shape[1], n_classes)
    head.set_standardization(x)  # unsupervised, shared by all members
    own = torch.as_tensor(fold)[:, None] == torch.as_tensor(member_folds(k, m))[None, :]  # (N, T)
    if sigmoid:
        cw = torch.ones(1, dtype=torch.float64)  # class weights are a softmax notion
    elif train_config.class_weights:
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        cw = torch.as_tensor(np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0))
    else:
        cw = torch.ones(n_classes, dtype=torch.float64)
    weight = (torch.ones(len(yt)) if sigmoid else cw.float()[yt])[:, None] * (
        ~own
    ).float()  # (N, T): loss weight of each (doc, member)
    opt = torch.optim.AdamW(head.parameters(), lr=train_config.learning_rate, weight_decay=train_config.weight_decay)
    gen = torch.Generator().manual_seed(train_config.seed)
    params = {"w1": head.w1, "b1": head.b1, "w2": head.w2, "b2": head.b2}
    best = {name: p.detach().clone() for name, p in params.items()}
    best_loss = torch.full((total,), float("inf"))
    since = torch.zeros(total, dtype=torch.long)
    own_f = own.float()
    history: list[dict[str, float]] = []
    for epoch in range(train_config.max_epochs):
        head.train()
        perm = torch.randperm(len(yt), generator=gen)
        total_loss = 0.0
        for s in range(0, len(perm), train_config.batch_size):
            idx = perm[s : s + train_config.batch_size]
            logits = head(x[idx], k=total)  # (B, T, C): every member once, dropout on
            ce = _item_loss(logits, yt[idx], sigmoid)  # (B, T)
            w = weight[idx]
            # Weighted mean per member (as CrossEntropyLoss(weight=...) would), summed over members
            # so each member's gradient equals that of training it alone.
            per_member = (ce * w).sum(0) / w.sum(0).clamp_min(1e-12)  # (T,)
            loss = per_member.sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total_loss += per_member.mean().item() * len(idx)
        with torch.no_grad(), eval_mode(head):
            nll = _item_loss(head(x, k=total), yt, sigmoid)  # (N, T), dropout off
            val = (nll * own_f).sum(0) / own_f.sum(0).clamp_min(1.0)  # (T,) NLL on the own fold
        better = val < best_loss - 1e-4
        best_loss = torch.where(better, val, best_loss)
        since = torch.where(better, torch.zeros_like(since), since + 1)
        for name, p in params.items():
            best[name][better] = p.detach()[better]
        history.append({"epoch": float(epoch), "train_loss": total_loss / len(yt), "val_loss": float(val.mean())})
        if progress is not None:
            progress("fit", (epoch + 1) / train_config.max_epochs)
        if bool((since >= train_config.patience).all()):
            break
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(best[name])
    head.eval()
    return head, history


def _item_loss(logits: torch.Tensor, y: torch.Tensor, sigmoid: bool) -> torch.Tensor:
    """Per (document, member) NLL (B, T) of logits (B, T, C): cross-entropy of class y (B,), or for
    sigmoid outputs the binary cross-entropy summed over the C labels of targets y (B, C)."""
    b, t, c = logits.shape
    if sigmoid:
        target = y[:, None, :].expand(b, t, c)
        return nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(2)
    return nn.functional.cross_entropy(logits.reshape(-1, c), y.repeat_interleave(t), reduction="none").view(b, t)


def multilabel_n_folds(n_items: int, requested: int) -> int:
    """K for multi-label cross-fitting: min(requested, N // MIN_PER_CLASS); 0 (no calibration) below 2."""
    k = min(requested, n_items // MIN_PER_CLASS) if requested >= 2 else 0
    return k if k >= 2 else 0


def multilabel_fold_assignment(targets: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold id (N,) in [0, k) for 0/1 targets (N, C): items dealt round-robin, rarest label first.

    Each item is keyed by the count of its rarest positive label (an empty set sorts last), the
    order seeded within a key, so every label's few positives spread over the folds.
    """
    y = np.asarray(targets) > 0
    counts = y.sum(0)
    rarest = np.where(y, counts[None, :], np.iinfo(np.int64).max).min(1)  # (N,)
    order = np.lexsort((rng.permutation(len(y)), rarest))
    fold = np.empty(len(y), dtype=np.int64)
    fold[order] = np.arange(len(y)) % k
    return fold


def out_of_fold_logits(sample_logits: np.ndarray, fold: np.ndarray, members_per_fold: int) -> np.ndarray:
    """Keep, for each document, only the samples drawn from its own fold's members (never trained on it).

    sample_logits (N, S, C) from a head with K * M members (sample s uses member s % (K*M));
    S must be a multiple of K*M. Returns (N, S / K, C).
    """
    k = int(fold.max()) + 1
    total = k * members_per_fold
    s = sample_logits.shape[1]
    if s % total:
        raise ValueError(f"{s} samples is not a multiple of {total} members")
    owner = member_folds(k, members_per_fold)[np.arange(s) % total]  # (S,) fold of each sample
    select = np.stack([np.flatnonzero(owner == f) for f in range(k)])  # (K, S / K)
    return np.take_along_axis(sample_logits, select[fold][:, :, None], axis=1)


def draws_per_member(samples: int, total_members: int) -> int:
    """MC draws per member so that members x draws >= ``samples``."""
    return max(1, math.ceil(samples / total_members))


def deployed_config(config: ModelConfig, total: int) -> ModelConfig:
    """The deployed config: K * M members, samples rounded up to a whole number of draws each."""
    return dataclasses.replace(config, n_members=total, samples=total * draws_per_member(config.samples, total))
