"""The stochastic Bayesian head and the classifier that pairs it with an encoder.

The head maps a document vector (H,) to class logits (C,). It is the only stochastic part: MC
dropout on its input and hidden layer, optionally an ensemble of M members with separate weights.
The encoder is never re-run per sample; sample j of a document uses member ``j % M``.

Training draws independent dropout masks per (document, sample) (``StochasticHead.forward``).
Scoring uses *consistent* MC dropout (``StochasticHead.sample``, as in BatchBALD): k masks are drawn
once from a fixed seed and shared by every document, so sample j is the same sub-network for the
whole pool. A document's scores then do not depend on which batch it was scored in, and the k
samples of all members fold into the weights: two matmuls, (B, H) @ (H, M*D) and (B, M*D) @ (M*D, k*C).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from modelsvc.config import ModelConfig
from modelsvc.features import HybridFeatures, SparsePath
from modelsvc.tuning import TunedLayers

#: torch intra-op threads for the head's scoring matmuls. They are small (256 x 768 @ 768 x 1280 per
#: scoring batch), so a second thread saves little on an idle CPU, and on a shared one its barrier waits
#: for a descheduled thread: measured on a 2-core Xeon at load 13-17, 1 thread 15-30 ms a 256-document
#: batch against 160-345 ms with 2 (bench/rescore.py, docs/BENCHMARKS.md). Several worker processes
#: per host (docs/WORKERS.md) want one each anyway.
HEAD_THREADS = 1


class StochasticHead(nn.Module):
    """Standardize -> [input dropout] -> Linear(H, D) -> GELU -> dropout -> Linear(D, C), M members.

    Weights are stacked over members: ``w1`` (M, H, D), ``w2`` (M, D, C).
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int,
        n_classes: int,
        n_members: int = 1,
        dropout: float = 0.3,
        input_dropout: float = 0.0,
    ):
        super().__init__()
        self.in_dim, self.hidden_dim, self.n_classes, self.n_members = (
            in_dim,
            hidden_dim,
            n_classes,
            n_members,
        )
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        self.w1 = nn.Parameter(torch.empty(n_members, in_dim, hidden_dim))
        self.b1 = nn.Parameter(torch.zeros(n_members, hidden_dim))
        self.w2 = nn.Parameter(torch.empty(n_members, hidden_dim, n_classes))
        self.b2 = nn.Parameter(torch.zeros(n_members, n_classes))
        self.drop_in = nn.Dropout(input_dropout)
        self.drop_hidden = nn.Dropout(dropout)
        self.forward_calls = 0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for m in range(self.n_members):
            nn.init.kaiming_uniform_(self.w1.data[m].T, a=5**0.5)
            nn.init.kaiming_uniform_(self.w2.data[m].T, a=5**0.5)
        nn.init.zeros_(self.b1)
        nn.init.zeros_(self.b2)

    def set_standardization(self, x: torch.Tensor) -> None:
        """Fit the input standardization on training vectors x (N, H)."""
        self.feature_mean.copy_(x.mean(0))
        self.feature_std.copy_(x.std(0, unbiased=False).clamp_min(1e-6))

    def forward(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """x (B, H) -> logits (B, k, C). One call for all B*k rows; sample j uses member j % M.

        Without input dropout (the default) the first layer is deterministic, so it runs once per
        document and member, (B, M, D); only the hidden dropout and the small second layer run
        per sample, which makes k samples nearly free.
        """
        self.forward_calls += 1
        b = x.shape[0]
        z = (x - self.feature_mean) / self.feature_std  # (B, H)
        member = torch.arange(k, device=x.device) % self.n_members  # (k,)
        if self.drop_in.p > 0 and self.training:
            zk = self.drop_in(z.unsqueeze(1).expand(b, k, self.in_dim))  # (B, k, H), masks per sample
            h = torch.einsum("bkh,khd->bkd", zk, self.w1[member]) + self.b1[member]  # (B, k, D)
        else:
            h1 = torch.einsum("bh,mhd->bmd", z, self.w1) + self.b1  # (B, M, D), once per member
            h = h1[:, member]  # (B, k, D)
        h = self.drop_hidden(nn.functional.gelu(h))  # independent masks per (doc, sample)
        return torch.einsum("bkd,kdc->bkc", h, self.w2[member]) + self.b2[member]  # (B, k, C)

    def dropout_masks(self, k: int, seed: int = 0) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Inverted-dropout masks for k consistent samples: input (k, H) or None, hidden (k, D)."""
        gen = torch.Generator(device="cpu").manual_seed(seed)

        def draw(p: float, width: int) -> torch.Tensor:
            keep = 1.0 - p
            return (torch.rand(k, width, generator=gen) < keep).float() / keep

        hidden = draw(self.drop_hidden.p, self.hidden_dim)
        inputs = draw(self.drop_in.p, self.in_dim) if self.drop_in.p > 0 else None
        return inputs, hidden

    def sample(self, x: torch.Tensor, k: int, *, seed: int = 0) -> torch.Tensor:
        """x (B, H) -> logits (B, k, C) under k consistent MC-dropout masks (see the module docstring).

        Sample j uses member ``j % M`` and mask j. Without input dropout this is two matmuls for
        all members and samples: the standardization folds into the first layer, (B, H) @ (H, M*D);
        mask j scales the rows of member m_j's second layer, and the k masked second layers sit in
        one block matrix (M*D, k*C) whose other members' rows are zero. The module stays in eval mode.
        """
        self.forward_calls += 1
        if self.drop_in.p > 0:  # the first layer differs per sample: (B, k, D)
            mask_in, mask_hidden = self.dropout_masks(k, seed)
            assert mask_in is not None
            w1, b1 = self._folded_first_layer()
            member = torch.arange(k) % self.n_members  # (k,)
            hk = torch.einsum("bh,khd->bkd", x, mask_in[:, :, None] * w1[member]) + b1[member]
            hk = nn.functional.gelu(hk) * mask_hidden  # (B, k, D)
            return torch.einsum("bkd,kdc->bkc", hk, self.w2[member]) + self.b2[member]
        w1_flat, b1_flat, w2_block, b2_k = self._folded(k, seed)
        hidden = nn.functional.gelu(torch.addmm(b1_flat, x, w1_flat))  # (B, M*D)
        return torch.addmm(b2_k, hidden, w2_block).view(-1, k, self.n_classes)  # (B, k, C)

    def _folded_first_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The standardization folded into the first layer: w1 (M, H, D), b1 (M, D)."""
        scale = 1.0 / self.feature_std  # (H,)
        w1 = self.w1 * scale[None, :, None]
        b1 = self.b1 - torch.einsum("h,mhd->md", self.feature_mean * scale, self.w1)
        return w1, b1

    def _folded(self, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Scoring weights for k consistent samples, built once per (k, seed) and weights version.

        w1 (H, M*D), b1 (M*D,), the block matrix w2 (M*D, k*C) and b2 (k*C,). Rebuilding them per
        256-document batch was most of a re-score's head time (measured: ~60 % of ``sample`` on a
        2-core Xeon); the key holds every tensor's version counter and storage, so a training step,
        ``load_state_dict`` or ``set_standardization`` rebuilds them.
        """
        tensors = (self.w1, self.b1, self.w2, self.b2, self.feature_mean, self.feature_std)
        key = (k, seed, self.drop_hidden.p, tuple((t._version, t.data_ptr()) for t in tensors))
        cached = getattr(self, "_folded_cache", None)
        if cached is not None and cached[0] == key:
            return cached[1]
        with torch.no_grad():
            _, mask_hidden = self.dropout_masks(k, seed)
            m, h, d, c = self.n_members, self.in_dim, self.hidden_dim, self.n_classes
            member = torch.arange(k) % m  # (k,)
            w1, b1 = self._folded_first_layer()
            w1_flat = w1.permute(1, 0, 2).reshape(h, m * d).contiguous()  # (H, M*D)
            w2 = torch.zeros(m, d, k, c, dtype=w1.dtype)  # block matrix: member rows x sample columns
            w2[member, :, torch.arange(k)] = mask_hidden[:, :, None] * self.w2[member]  # (k, D, C) blocks
            folded = (w1_flat, b1.reshape(m * d).contiguous(), w2.view(m * d, k * c), self.b2[member].reshape(k * c))
        self._folded_cache = (key, folded)
        return folded

    def mean_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic logits (B, C): dropout off, averaged over members (used by attribution)."""
        with eval_mode(self):
            return self.forward(x, k=self.n_members).mean(1)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` in eval mode and restore its previous mode afterwards, even on error."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


@contextlib.contextmanager
def mc_dropout(module: nn.Module) -> Iterator[nn.Module]:
    """Enable dropout for MC sampling; restore the previous (normally eval) mode in ``finally``."""
    was_training = module.training
    module.train()
    try:
        yield module
    finally:
        module.train(was_training)


@dataclass(frozen=True)
class CalibrationSet:
    """Labeled pool documents drawn at random, as the classifier's training saw them out of fold.

    ``logits`` (N, S, C): uncalibrated MC samples of each document from the fold heads that never trained on
    it (``TrainResult.oof_logits``); ``labels`` (N,) int. Drawn at random, they are as representative of the
    pool as the blind holdout, so the holdout's temperature fit takes them beside it (``modelsvc.holdout``);
    and since they were trained on, only their out-of-fold samples are honest, which is why they are
    kept here rather than re-scored by the deployed heads.
    """

    logits: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        logits = np.asarray(self.logits, dtype=np.float32)
        labels = np.asarray(self.labels, dtype=np.int64)
        if logits.ndim != 3 or labels.shape != (logits.shape[0],):
            raise ValueError(f"need logits (N, S, C) and labels (N,), got {logits.shape} and {labels.shape}")
        object.__setattr__(self, "logits", logits)
        object.__setattr__(self, "labels", labels)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def samples(self, k: int) -> np.ndarray:
        """The logits with k samples per document (N, k, C), cycling through the S stored ones.

        The holdout's samples come from every member (k = K*M draws), these from one fold's members
        (S = k / K): repeating them leaves their mean tempered probabilities unchanged when S divides k.
        """
        return self.logits[:, np.arange(k) % self.logits.shape[1]]


@dataclass
class Classifier:
    """A trained head plus everything needed to use it: labels, encoder identity, calibration.

    ``tuned`` holds the fine-tuned encoder layers (``TrainConfig.fine_tune`` other than frozen);
    ``encoder_id`` is then their tuned identity (``tuned.encoder_id``). ``features`` holds the fitted
    TF-IDF + SVD block of a ``features="hybrid"`` model, or the sparse path of a ``features="sparse"``
    one (its offsets travel as the last C columns of ``head_inputs`` and are added to every sample):
    the head's inputs are then ``head_inputs``, not the bare embeddings.
    """

    config: ModelConfig
    label_names: list[str]
    encoder_id: str
    head: StochasticHead
    temperature: float = 1.0
    calibration: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    tuned: TunedLayers | None = None
    features: HybridFeatures | SparsePath | None = None
    # Randomly drawn training documents' out-of-fold samples: the holdout's temperature fit takes them too.
    calibration_set: CalibrationSet | None = None
    # Multi-label only (``config.output == "sigmoid"``), one value per label (C,): the temperature that
    # divides that label's logits, and the probability at which the label joins the predicted set.
    label_temperatures: list[float] | None = None
    thresholds: list[float] | None = None

    @property
    def multi_label(self) -> bool:
        return self.config.output == "sigmoid"

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def head_inputs(self, texts: Sequence[str], embeddings: np.ndarray) -> np.ndarray:
        """What the head reads for ``texts`` (N) with encoder vectors (N, H): (N, H), (N, H + R) when hybrid,
        (N, H + C) with the sparse path (its offsets, which ``sample_logits`` adds to the head's logits)."""
        if self.features is None:
            return np.asarray(embeddings, dtype=np.float32)
        return self.features.augment(texts, embeddings)

    def sample_logits(self, embeddings: np.ndarray, k: int | None = None, batch_size: int = 4096) -> np.ndarray:
        """MC samples of uncalibrated logits (N, K, C) from embeddings (N, H); K = config.samples.

        Consistent masks (seed 0): the same document always gets the same samples, in any batch.
        """
        k = k or self.config.samples
        x = torch.as_tensor(np.ascontiguousarray(embeddings, dtype=np.float32))
        offsets = None
        if isinstance(self.features, SparsePath):
            width = self.head.in_dim + self.n_classes
            if x.ndim != 2 or x.shape[1] != width:
                raise ValueError(
                    f"a sparse-path classifier reads head_inputs (N, {width}): the vectors and the path's offsets, "
                    f"got {tuple(x.shape)}"
                )
            x, offsets = x[:, : self.head.in_dim], x[:, self.head.in_dim :].numpy()
        out = np.empty((x.shape[0], k, self.n_classes), dtype=np.float32)
        threads = torch.get_num_threads()
        torch.set_num_threads(min(threads, HEAD_THREADS))
        try:
            with torch.inference_mode(), eval_mode(self.head):
                for s in range(0, x.shape[0], batch_size):
                    out[s : s + batch_size] = self.head.sample(x[s : s + batch_size], k).numpy()
        finally:
            torch.set_num_threads(threads)
        if offsets is not None:
            out += offsets[:, None, :]
        return out


def build_head(config: ModelConfig, in_dim: int, n_classes: int) -> StochasticHead:
    return StochasticHead(in_dim, config.hidden_dim, n_classes, config.n_members, config.dropout, config.input_dropout)
