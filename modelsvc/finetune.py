"""Fine-tuning the encoder's top layers with the head (``TrainConfig.fine_tune = "topN"`` or ``"full"``).

The encoder splits at layer ``first = L - N`` (L transformer layers; ``full``: first = 0, the
embedding layer stays frozen):

- ``encode_prefix``: windows as in ``TextEncoder.encode``; the embedding layer and layers [0, first)
  run ONCE per window, deterministically (``inference_mode``, the encoder's inference weights: bf16
  where ``encode`` uses bf16), in length-sorted batches. Kept per window: the states at the cut
  (T, D), and the middle layer's masked mean when ``mean_mid`` pooling reads a frozen layer;
- ``TopLayers``: trainable fp32 copies of layers [first, L), run under bf16 autocast where the
  encoder runs bf16, pooled as ``encode`` pools (same pooling, token-weighted mean over windows);
- ``train_prefix`` (from prefix states) and ``train_fine_tuned`` (from texts): the recipe below.

Recipe. One seeded, stratified split, as the ``folds=0`` path; no cross-fitting (K folds would need
K tuned encoders: K times the training, and K encoder passes per scored document):

1. calibration part (``calibration_fraction``); within the fit part a validation part
   (``validation_fraction``) for early stopping;
2. the head is fitted on the frozen vectors exactly as ``fitting.fit_head`` does (class weights if
   ``class_weights``, early stopping, standardization): a linear-probe warm start, so a random head does not push the
   encoder layers around (LP-FT, Kumar et al. 2022);
3. joint training of the top layers (AdamW, ``encoder_learning_rate``) and the head
   (``learning_rate``): cross-entropy (class-weighted if ``class_weights``), the layers' own dropout on,
   ``fine_tune_batch_size`` documents per step, at most ``fine_tune_epochs`` epochs; after each epoch
   the validation NLL at its best temperature (dropout off); stop after ``FINE_TUNE_PATIENCE`` epochs
   without a better one, keep the best (epoch 0 = the probe alone);
4. temperature on the calibration + validation predictions of the final model; error mapping and
   metrics on the calibration part (``fitting.calibrate_held_out``);
5. refit (``fine_tune_refit``, on by default): fresh copies of the layers, the probe and then exactly
   the chosen number of joint epochs on ALL labels (same seed and settings), deployed with the
   temperature and error mapping of step 4. The split's model learned from the fit part alone (about
   two thirds of the labels: with 20 % calibration and 15 % validation, 68 %); the refit uses every
   label, the split only chose the epoch count and the calibration (the "refit on all data after
   model selection" of AutoGluon's ``refit_full`` and of cross-validated model selection). The metrics
   stay those of the split's model on its calibration part: the refit model has no held-out labels.

When no joint epoch beats the probe (or there is no validation part), the layers stay as they were and
the result is what ``fine_tune="frozen"`` trains on the same labels (cross-fitted, frozen identity).

The deployed classifier carries the tuned layers (``Classifier.tuned``); its encoder identity is
``<base>+<mode>@<digest>`` (``modelsvc.tuning``). Scoring runs the tuned encoder once per document
and the head's k MC-dropout samples in one batched call, as for the frozen encoder.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers.masking_utils import create_bidirectional_mask

from modelsvc.calibration import fit_temperature, tempered_samples
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.encoder import ProgressFn, TextEncoder, padded_batch, pool_hidden
from modelsvc.fitting import (
    TrainingError,
    TrainResult,
    calibrate_held_out,
    class_weights,
    encode_labels,
    fit_head,
    single_thread,
    stratified_split,
    train_embeddings,
)
from modelsvc.model import Classifier, StochasticHead, eval_mode
from modelsvc.tuning import TunedLayers, first_tuned_layer, transformer_layers

#: Joint epochs without a better validation loss before stopping. The first joint epoch often scores
#: worse than the probe alone (trec seed 0: calibrated validation NLL 0.348 -> 0.354 -> 0.325 -> 0.304
#: -> 0.285 over epochs 0-4), so one bad epoch must not end the training.
FINE_TUNE_PATIENCE = 2


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


@dataclass
class PrefixStates:
    """Frozen encoder states at the cut for the windows of ``n_docs`` documents (``encode_prefix``)."""

    first: int
    """Layers below the cut; the tuned part starts at this layer index."""
    states: list[torch.Tensor]
    """One (T_w, D) tensor per window, in the encoder's compute dtype."""
    mid: torch.Tensor | None
    """(W, D) float32 masked mean of the middle layer when it lies below the cut (mean_mid), else None."""
    doc_index: np.ndarray
    """(W,) document of each window."""
    n_docs: int

    @property
    def lengths(self) -> np.ndarray:
        return np.asarray([len(s) for s in self.states], dtype=np.int64)

    def subset(self, docs: np.ndarray) -> PrefixStates:
        """The windows of ``docs`` (distinct document indices), renumbered 0..len(docs)-1 in that order."""
        docs = np.asarray(docs, dtype=np.int64)
        position = np.full(self.n_docs, -1, dtype=np.int64)
        position[docs] = np.arange(len(docs))
        keep = np.flatnonzero(position[self.doc_index] >= 0)
        mid = None if self.mid is None else self.mid[torch.as_tensor(keep)]
        return PrefixStates(self.first, [self.states[w] for w in keep], mid, position[self.doc_index[keep]], len(docs))


def encode_prefix(
    encoder: TextEncoder, texts: Sequence[str], first: int, progress: ProgressFn | None = None
) -> PrefixStates:
    """Run the embedding layer and layers [0, first) once per window of ``texts`` (N); see the module doc."""
    if encoder.tuned is not None:
        raise TrainingError("fine-tuning starts from the base encoder, not from an already tuned one")
    model = encoder.inference_model
    layers = transformer_layers(model)
    config: Any = getattr(model, "config")  # noqa: B009 - transformers' PreTrainedConfig
    embeddings: Any = getattr(model, "embeddings")  # noqa: B009
    mid_layer = len(layers) // 2  # the hidden_states index that mean_mid pools (as encoder.pool_hidden)
    keep_mid = encoder.config.pooling == "mean_mid" and mid_layer <= first
    win = encoder.windows(list(texts))
    lengths = np.asarray([len(ids) for ids in win.input_ids], dtype=np.int64)
    states: list[torch.Tensor] = [torch.empty(0)] * len(lengths)
    mids = torch.zeros(len(lengths), int(config.hidden_size)) if keep_mid else None
    pad_id = encoder.tokenizer.pad_token_id or 0
    done = 0
    for idx in encoder._batches(lengths):
        ids, mask = padded_batch([win.input_ids[w] for w in idx], pad_id)
        ids, mask = ids.to(encoder.device), mask.to(encoder.device)
        mid: torch.Tensor | None = None
        with torch.inference_mode(), encoder.autocast():
            h = embeddings(input_ids=ids)  # (B, T, D)
            attn = create_bidirectional_mask(config=config, inputs_embeds=h, attention_mask=mask)
            for j in range(first + 1):  # h holds hidden_states[j]
                if keep_mid and j == mid_layer:
                    mid = _masked_mean(h.float(), mask)  # (B, D)
                if j < first:
                    h = layers[j](h, attn)
        h = h.clone().cpu()  # a normal tensor (inference tensors cannot feed autograd later)
        for row, w in enumerate(idx):
            states[w] = h[row, : lengths[w]]
        if mids is not None and mid is not None:
            mids[torch.as_tensor(idx)] = mid.clone().float().cpu()
        encoder.forward_calls += 1
        encoder.windows_encoded += len(idx)
        done += len(idx)
        if progress is not None:
            progress("encode", done / len(lengths))
    return PrefixStates(first, states, mids, win.doc_index, len(texts))


class TopLayers(nn.Module):
    """Trainable fp32 copies of the encoder's layers [first, L): prefix states -> pooled vectors (B, H')."""

    def __init__(self, encoder: TextEncoder, first: int) -> None:
        super().__init__()
        base = encoder.base_model
        layers = transformer_layers(base)
        self.first, self.n_layers, self.pooling = first, len(layers), encoder.config.pooling
        self.mid_layer = self.n_layers // 2
        self.layers = nn.ModuleList(copy.deepcopy(layers[i]).float() for i in range(first, self.n_layers))
        for p in self.layers.parameters():
            p.requires_grad_(True)
        self.model_config: Any = getattr(base, "config")  # noqa: B009
        self.device_type = encoder.device.type
        self.autocast_dtype = torch.bfloat16 if encoder.dtype == torch.bfloat16 else None
        width = int(self.model_config.hidden_size)
        self.out_dim = 2 * width if self.pooling in ("mean_max", "mean_mid") else width

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, mid: torch.Tensor | None = None) -> torch.Tensor:
        """hidden (B, T, D) prefix states, mask (B, T), mid (B, D) frozen middle-layer mean -> (B, H')."""
        h = hidden.float()
        attn = create_bidirectional_mask(config=self.model_config, inputs_embeds=h, attention_mask=mask)
        dtype = self.autocast_dtype or torch.bfloat16
        with torch.autocast(self.device_type, dtype=dtype, enabled=self.autocast_dtype is not None):
            for j, layer in enumerate(self.layers, start=self.first + 1):  # h becomes hidden_states[j]
                h = layer(h, attn)
                if self.pooling == "mean_mid" and mid is None and j == self.mid_layer:
                    mid = _masked_mean(h.float(), mask)
        last = h.float()
        if self.pooling == "mean_mid":
            if mid is None:
                raise ValueError("mean_mid pooling needs the middle layer's mean")
            return torch.cat([_masked_mean(last, mask), mid.float()], dim=-1)
        return pool_hidden(last, mask, self.pooling)


def _run_windows(top: TopLayers, prefix: PrefixStates, windows: np.ndarray) -> torch.Tensor:
    """Pooled window vectors (len(windows), H') through ``top``, one padded batch."""
    states = [prefix.states[w] for w in windows]
    hidden = nn.utils.rnn.pad_sequence(states, batch_first=True)  # (B, T, D)
    lengths = torch.as_tensor([len(s) for s in states])
    mask = (torch.arange(hidden.shape[1])[None, :] < lengths[:, None]).long()  # (B, T)
    mid = None if prefix.mid is None else prefix.mid[torch.as_tensor(windows)]
    device = next(top.parameters()).device  # the encoder's device; states, head and pooling stay on the CPU
    out = top(hidden.to(device), mask.to(device), None if mid is None else mid.to(device))
    return out.cpu()


def _doc_mean(pooled: torch.Tensor, lengths: np.ndarray, doc_index: np.ndarray, n_docs: int) -> torch.Tensor:
    """Token-weighted mean of each document's windows: (W, H') -> (N, H'), as ``TextEncoder.encode``."""
    w = torch.as_tensor(lengths, dtype=pooled.dtype)
    doc = torch.as_tensor(doc_index)
    total = pooled.new_zeros(n_docs, pooled.shape[1]).index_add(0, doc, pooled * w[:, None])
    return total / pooled.new_zeros(n_docs).index_add(0, doc, w).clamp_min(1.0)[:, None]


def doc_vectors(top: TopLayers, prefix: PrefixStates, docs: np.ndarray) -> torch.Tensor:
    """Document vectors (B, H') for ``docs`` with gradients through ``top`` (training)."""
    sub = prefix.subset(docs)
    pooled = _run_windows(top, sub, np.arange(len(sub.states)))
    return _doc_mean(pooled, sub.lengths, sub.doc_index, sub.n_docs)


def embed_prefix(top: TopLayers, prefix: PrefixStates, batch_tokens: int = 8192) -> np.ndarray:
    """Document vectors (N, H') float32 through ``top`` in eval mode: length-sorted token-budget batches."""
    lengths = prefix.lengths
    pooled = torch.zeros(len(lengths), top.out_dim)
    order = np.argsort(-lengths, kind="stable")
    with torch.inference_mode(), eval_mode(top):
        start = 0
        while start < len(order):
            size = max(1, batch_tokens // max(int(lengths[order[start]]), 1))
            idx = order[start : start + size]
            pooled[torch.as_tensor(idx)] = _run_windows(top, prefix, idx).float()
            start += size
        out = _doc_mean(pooled, lengths, prefix.doc_index, prefix.n_docs)
    return out.numpy().astype(np.float32)


def _val_loss(top: TopLayers, head: StochasticHead, prefix: PrefixStates, y: np.ndarray, batch_tokens: int) -> float:
    """NLL of the members' mean probabilities (dropout off) at the temperature that suits them best.

    Calibration divides the logits by a fitted temperature anyway, so the stopping criterion ignores
    the overconfidence that joint training builds up and tracks what calibration cannot fix.
    """
    x = torch.as_tensor(embed_prefix(top, prefix, batch_tokens))
    with torch.no_grad(), eval_mode(head):
        logits = head(x, k=head.n_members).numpy()  # (V, M, C)
    probs = tempered_samples(logits, fit_temperature(logits, y)).mean(1)  # (V, C)
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).mean())


def _joint_stepper(
    top: TopLayers, head: StochasticHead, prefix: PrefixStates, y: np.ndarray, tr: np.ndarray, train_config: TrainConfig
) -> Callable[[], float]:
    """One joint epoch over the documents ``tr`` per call (seeded order); returns its mean training loss."""
    n_classes, m = head.n_classes, head.n_members
    weights = class_weights(y[tr], n_classes) if train_config.class_weights else None
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    opt = torch.optim.AdamW(
        [
            {"params": top.parameters(), "lr": train_config.encoder_learning_rate},
            {"params": head.parameters(), "lr": train_config.learning_rate},
        ],
        weight_decay=train_config.weight_decay,
    )
    gen = torch.Generator().manual_seed(train_config.seed)
    yt = torch.as_tensor(y, dtype=torch.long)

    def epoch() -> float:
        top.train()
        head.train()
        perm = tr[torch.randperm(len(tr), generator=gen).numpy()]
        total = 0.0
        for s in range(0, len(perm), train_config.fine_tune_batch_size):
            docs = perm[s : s + train_config.fine_tune_batch_size]
            logits = head(doc_vectors(top, prefix, docs), k=m)  # (B, M, C), dropout on
            loss = loss_fn(logits.reshape(-1, n_classes), yt[docs].repeat_interleave(m))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(docs)
        return total / len(tr)

    return epoch


def _joint_training(
    top: TopLayers,
    head: StochasticHead,
    prefix: PrefixStates,
    y: np.ndarray,
    tr: np.ndarray,
    va: np.ndarray,
    model_config: ModelConfig,
    train_config: TrainConfig,
    progress: ProgressFn | None,
    deadline: float | None = None,
) -> tuple[list[dict[str, float]], int]:
    """Step 3 of the recipe; leaves ``top`` and ``head`` at their best epoch, in eval mode.

    Returns the per-epoch history and the best epoch (0: no joint epoch beat the probe alone).
    ``deadline`` (``time.monotonic()``): no epoch starts after it, nor one that would end after it at
    the pace of the epochs so far; the best epoch until then is kept (the history's last row says so).
    """
    step_epoch = _joint_stepper(top, head, prefix, y, tr, train_config)
    val_prefix = prefix.subset(va)
    best_loss = _val_loss(top, head, val_prefix, y[va], model_config.batch_tokens)
    best = (copy.deepcopy(top.state_dict()), copy.deepcopy(head.state_dict()))
    history = [{"fine_tune_epoch": 0.0, "val_loss": best_loss}]
    since = best_epoch = 0
    started = time.monotonic()
    for epoch in range(1, train_config.fine_tune_epochs + 1):
        pace = (time.monotonic() - started) / (epoch - 1) if epoch > 1 else 0.0
        if deadline is not None and time.monotonic() + pace > deadline:
            history.append({"stopped_by_budget": 1.0, "after_epoch": float(epoch - 1)})
            break
        train_loss = step_epoch()
        val_loss = _val_loss(top, head, val_prefix, y[va], model_config.batch_tokens)
        history.append({"fine_tune_epoch": float(epoch), "train_loss": train_loss, "val_loss": val_loss})
        if progress is not None:
            progress("fit", 0.5 + 0.5 * epoch / train_config.fine_tune_epochs)
        if val_loss < best_loss - 1e-4:
            best_loss, best_epoch, since = val_loss, epoch, 0
            best = (copy.deepcopy(top.state_dict()), copy.deepcopy(head.state_dict()))
        else:
            since += 1
            if since >= FINE_TUNE_PATIENCE:
                break
    top.load_state_dict(best[0])
    head.load_state_dict(best[1])
    top.eval()
    head.eval()
    return history, best_epoch


def _scaled(progress: ProgressFn | None, low: float, high: float) -> ProgressFn | None:
    """Report a sub-step's ``fit`` fraction as ``low``..``high`` of the whole fit (one stage for the service)."""
    if progress is None:
        return None
    report = progress

    def scaled(stage: str, fraction: float) -> None:
        report(stage, low + (high - low) * fraction)

    return scaled


def _refit_all(
    encoder: TextEncoder,
    prefix: PrefixStates,
    y: np.ndarray,
    n_classes: int,
    epochs: int,
    model_config: ModelConfig,
    train_config: TrainConfig,
    progress: ProgressFn | None,
) -> tuple[TopLayers, StochasticHead]:
    """Step 5: fresh layers, the probe, then exactly ``epochs`` joint epochs on every labeled document."""
    top = TopLayers(encoder, prefix.first)
    frozen = embed_prefix(top, prefix, model_config.batch_tokens)
    with single_thread():
        head = fit_head(frozen, y, n_classes, model_config, train_config, _scaled(progress, 0.0, 0.2))[0]
    step_epoch = _joint_stepper(top, head, prefix, y, np.arange(prefix.n_docs), train_config)
    for epoch in range(1, epochs + 1):
        step_epoch()
        if progress is not None:
            progress("fit", 0.2 + 0.8 * epoch / epochs)
    top.eval()
    head.eval()
    return top, head


def train_prefix(
    prefix: PrefixStates,
    labels: Sequence[Any],
    *,
    label_names: Sequence[str],
    encoder: TextEncoder,
    model_config: ModelConfig,
    train_config: TrainConfig,
    progress: ProgressFn | None = None,
    deadline: float | None = None,
) -> tuple[TrainResult, TopLayers]:
    """Fine-tune from prefix states of N labeled documents (labels (N)); see the module docstring.

    Returns the TrainResult (its classifier carries the tuned layers) and the trained ``TopLayers``
    (to embed other prefix states, e.g. a test set, with ``embed_prefix``).

    ``deadline`` (a ``time.monotonic()`` value; the deep tier's time budget): joint epochs stop at it
    (``_joint_training``), and the refit (step 5) is skipped when it would end after it: the split's
    model is deployed then (``fine_tune["refit_skipped"]`` says why). No epoch done: the frozen result.
    """
    names = [str(n) for n in label_names]
    if len(set(names)) != len(names) or len(names) < 2:
        raise TrainingError("label_names must hold at least 2 distinct names")
    if len(labels) != prefix.n_docs or not len(labels):
        raise TrainingError(f"{prefix.n_docs} texts but {len(labels)} labels")
    if encoder.tuned is not None:
        raise TrainingError("fine-tuning starts from the base encoder, not from an already tuned one")
    y = encode_labels(labels, names)
    n_layers = len(transformer_layers(encoder.base_model))
    if prefix.first != first_tuned_layer(train_config.fine_tune, n_layers):
        raise TrainingError(
            f"prefix states cut at layer {prefix.first} do not match fine_tune={train_config.fine_tune}"
        )
    t0 = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(train_config.seed)
        top = TopLayers(encoder, prefix.first)
        fit_idx, cal_idx = stratified_split(
            y, train_config.calibration_fraction, np.random.default_rng(train_config.seed + 1)
        )
        frozen = embed_prefix(top, prefix.subset(fit_idx), model_config.batch_tokens)  # (F, H') untuned vectors
        refit = train_config.fine_tune_refit
        split_progress = _scaled(progress, 0.0, 0.6 if refit else 1.0)
        with single_thread():
            head, history, sizes, val_rel = fit_head(
                frozen, y[fit_idx], len(names), model_config, train_config, _scaled(split_progress, 0.0, 0.5)
            )
        va = fit_idx[val_rel]
        tr = np.setdiff1d(fit_idx, va)
        t1 = time.perf_counter()
        best_epoch = 0
        if len(va):
            joint, best_epoch = _joint_training(
                top, head, prefix, y, tr, va, model_config, train_config, split_progress, deadline
            )
            history += joint
    t2 = time.perf_counter()
    info: dict[str, Any] = {
        "mode": train_config.fine_tune if best_epoch > 0 else "frozen",
        "first_layer": prefix.first,
        "epochs": sum(1 for h in history if h.get("fine_tune_epoch", 0) > 0),
        "best_epoch": best_epoch,
    }
    if any(h.get("stopped_by_budget") for h in history):
        info["stopped_by_budget"] = True
    if best_epoch == 0:
        # No validation part (a class with < 3 labels), or no joint epoch beat the probe: the layers
        # are unchanged, so train exactly what fine_tune="frozen" trains (cross-fitted on ALL labels,
        # frozen identity, the cache serves it) instead of deploying the single-split probe.
        info["skipped"] = (
            "no joint epoch improved the validation loss of the probe"
            if len(va)
            else "no validation part to stop the joint training on"
        )
        result = train_embeddings(
            embed_prefix(top, prefix, model_config.batch_tokens),
            labels,
            label_names=names,
            encoder_id=encoder.encoder_id,
            model_config=model_config,
            train_config=dataclasses.replace(train_config, fine_tune="frozen"),
        )
        result.calibration["fine_tune"] = info
        result.classifier.calibration = result.calibration
        result.history = history + result.history
        result.timings = {"probe": t1 - t0, "joint": t2 - t1, **result.timings}
        if progress is not None:
            progress("calibrate", 1.0)
        return result, top
    # The split's model: its held-out parts fit the temperature and give the metrics (``encoder_id`` is
    # not read by the calibration; the deployed classifier below carries the tuned identity).
    split = Classifier(config=model_config, label_names=names, encoder_id=encoder.encoder_id, head=head)
    held = np.concatenate([cal_idx, va])
    emb = embed_prefix(top, prefix.subset(held), model_config.batch_tokens)
    calibration, metrics = calibrate_held_out(
        split, emb[: len(cal_idx)], y[cal_idx], emb[len(cal_idx) :], y[va], train_config
    )
    calibration["method"] = "held_out"
    calibration["fine_tune"] = info
    sizes["calibration"] = int(len(cal_idx))
    t3 = time.perf_counter()
    timings = {"probe": t1 - t0, "fit": t2 - t0, "calibrate": t3 - t2}
    if refit and deadline is not None:
        # The refit trains best_epoch epochs on all N documents (the split's epochs saw len(tr)).
        epochs_done = max(1, info["epochs"])
        estimate = (t2 - t1) / epochs_done * best_epoch * prefix.n_docs / max(1, len(tr))
        if time.monotonic() + estimate > deadline:
            refit = False
            info["refit_skipped"] = f"the time budget leaves less than the refit's estimated {estimate:.0f} s"
    if refit:
        # Step 5: the split chose the epochs and the calibration; the deployed model learns from all labels.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(train_config.seed)
            top, head = _refit_all(
                encoder, prefix, y, len(names), best_epoch, model_config, train_config, _scaled(progress, 0.6, 1.0)
            )
        info["refit"] = {"epochs": best_epoch, "n": int(prefix.n_docs)}
        calibration["metrics_of"] = "the split's model (fit part only), on its calibration part"
        sizes["refit"] = int(prefix.n_docs)
        timings["refit"] = time.perf_counter() - t3
    tuned = TunedLayers.from_layers(
        top.layers, first=top.first, n_layers=n_layers, mode=train_config.fine_tune, base_id=encoder.encoder_id
    )
    clf = Classifier(
        config=model_config,
        label_names=names,
        encoder_id=tuned.encoder_id,
        head=head,
        temperature=split.temperature,
        calibration=calibration,
        metrics=split.metrics,
        tuned=tuned,
    )
    if progress is not None:
        progress("calibrate", 1.0)
    return TrainResult(clf, metrics, calibration, history, sizes, timings), top


def train_fine_tuned(
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    label_names: Sequence[str],
    model_config: ModelConfig | None = None,
    train_config: TrainConfig,
    encoder: TextEncoder | None = None,
    progress: ProgressFn | None = None,
    deadline: float | None = None,
) -> TrainResult:
    """``training.train`` for ``fine_tune`` other than frozen: prefix once per document, then ``train_prefix``.

    ``deadline``: a ``time.monotonic()`` value bounding the tuning (see ``train_prefix``).
    """
    model_config = model_config or (encoder.config if encoder is not None else ModelConfig())
    encoder = encoder or TextEncoder(model_config)
    try:
        first = first_tuned_layer(train_config.fine_tune, len(transformer_layers(encoder.base_model)))
    except ValueError as exc:
        raise TrainingError(str(exc)) from exc
    t0 = time.perf_counter()
    prefix = encode_prefix(encoder, texts, first, progress)
    encode_s = time.perf_counter() - t0
    result, _ = train_prefix(
        prefix,
        labels,
        label_names=label_names,
        encoder=encoder,
        model_config=model_config,
        train_config=train_config,
        progress=progress,
        deadline=deadline,
    )
    result.timings["encode"] = encode_s
    return result
