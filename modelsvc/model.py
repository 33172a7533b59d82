"""The stochastic Bayesian head and the classifier that pairs it with an encoder.

The head maps a document vector (H,) to class logits (C,). It is the only stochastic part: MC
dropout on its input and hidden layer, optionally an ensemble of M members with separate weights.
k samples are drawn by repeating each vector k times and running ONE batched call over (B*k)
rows; sample j of a document uses member ``j % M``. The encoder is never re-run per sample.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from modelsvc.config import ModelConfig


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


@dataclass
class Classifier:
    """A trained head plus everything needed to use it: labels, encoder identity, calibration."""

    config: ModelConfig
    label_names: list[str]
    encoder_id: str
    head: StochasticHead
    temperature: float = 1.0
    calibration: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.label_names)

    def sample_logits(self, embeddings: np.ndarray, k: int | None = None, batch_size: int = 2048) -> np.ndarray:
        """MC samples of uncalibrated logits (N, K, C) from embeddings (N, H); K = config.samples."""
        k = k or self.config.samples
        x = torch.as_tensor(np.ascontiguousarray(embeddings, dtype=np.float32))
        out = np.zeros((x.shape[0], k, self.n_classes), dtype=np.float32)
        gen_state = torch.random.get_rng_state()
        try:
            torch.manual_seed(0)  # scores are reproducible: the same text gets the same samples
            with torch.inference_mode(), mc_dropout(self.head):
                for s in range(0, x.shape[0], batch_size):
                    out[s : s + batch_size] = self.head(x[s : s + batch_size], k=k).numpy()
        finally:
            torch.random.set_rng_state(gen_state)
        return out


def build_head(config: ModelConfig, in_dim: int, n_classes: int) -> StochasticHead:
    return StochasticHead(in_dim, config.hidden_dim, n_classes, config.n_members, config.dropout, config.input_dropout)
