"""Compatibility layer for users of the old "Bayesian Expectation Transformer" design.

The old layer averaged position-free attention over ``k_permutations`` token permutations. Self-
attention without positions is permutation-equivariant, so that average was the identity at k
times the compute, and its "uncertainty" was constant. This class keeps the constructor (old
config keys) and the output dict, but the expectation is now real:

- self-attention runs ONCE, deterministically (dropout off), with the key padding mask;
- the stochastic part (MC dropout in the feed-forward block and a small probe classifier) runs
  as ONE batched call over (B*k) rows, ``k = k_permutations`` samples;
- ``hidden_states`` is the expectation over the k samples, (B, T, d_model);
- ``epistemic_uncertainty`` is the mutual information (BALD) of the k probe predictions, (B,).

New code should use ``modelsvc.training.train`` / ``modelsvc.inference.score_texts``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from modelsvc.model import eval_mode, mc_dropout


def _get(config: Any, key: str, default: Any) -> Any:
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


class BayesianExpectationTransformerLayer(nn.Module):
    """``BayesianExpectationTransformerLayer(config)`` with the old keys.

    config (mapping or object): ``d_model``, ``n_heads``, ``dropout``, ``k_permutations`` (read as
    the number of MC samples), optional ``d_ff`` (default 4*d_model) and ``num_labels`` (probe
    classes for the uncertainty, default 2).
    """

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.d_model = int(_get(config, "d_model", 0))
        self.n_heads = int(_get(config, "n_heads", 1))
        self.dropout_p = float(_get(config, "dropout", 0.1))
        self.k = int(_get(config, "k_permutations", 16))
        d_ff = int(_get(config, "d_ff", 4 * self.d_model))
        n_labels = int(_get(config, "num_labels", 2))
        if self.d_model < 1 or self.d_model % self.n_heads:
            raise ValueError("d_model must be a positive multiple of n_heads")
        if self.k < 2:
            raise ValueError("k_permutations (number of samples) must be >= 2 for an uncertainty")
        if not 0.0 < self.dropout_p < 1.0:
            raise ValueError("dropout must be in (0, 1) for MC sampling")
        if _get(config, "use_positions", None) is False:
            warnings.warn("use_positions is ignored: positions come from the encoder", stacklevel=2)
        self.attn = nn.MultiheadAttention(self.d_model, self.n_heads, dropout=self.dropout_p, batch_first=True)
        self.norm1 = nn.LayerNorm(self.d_model)
        self.ff = nn.Sequential(
            nn.Linear(self.d_model, d_ff),
            nn.GELU(),
            nn.Dropout(self.dropout_p),
            nn.Linear(d_ff, self.d_model),
        )
        self.ff_dropout = nn.Dropout(self.dropout_p)
        self.norm2 = nn.LayerNorm(self.d_model)
        self.probe = nn.Sequential(nn.Dropout(self.dropout_p), nn.Linear(self.d_model, n_labels))
        self.stochastic_calls = 0

    def forward(
        self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """hidden_states (B, T, D), attention_mask (B, T) with 1 = token -> dict of tensors:
        hidden_states (B, T, D), epistemic_uncertainty (B,), probs (B, C), sample_probs (B, k, C)."""
        b, t, d = hidden_states.shape
        mask = torch.ones(b, t, device=hidden_states.device) if attention_mask is None else attention_mask.float()
        # Deterministic part, once.
        with eval_mode(self.attn):
            att, _ = self.attn(hidden_states, hidden_states, hidden_states, key_padding_mask=mask == 0)
        x = self.norm1(hidden_states + att)  # (B, T, D)
        # Stochastic part: one batched call over (B*k) rows.
        xk = x.unsqueeze(1).expand(b, self.k, t, d).reshape(b * self.k, t, d)  # (B*k, T, D)
        mk = mask.repeat_interleave(self.k, dim=0).unsqueeze(-1)  # (B*k, T, 1)
        with mc_dropout(self.ff), mc_dropout(self.ff_dropout), mc_dropout(self.probe):
            self.stochastic_calls += 1
            yk = self.norm2(xk + self.ff_dropout(self.ff(xk)))  # (B*k, T, D)
            pooled = (yk * mk).sum(1) / mk.sum(1).clamp_min(1.0)  # (B*k, D)
            probs = torch.softmax(self.probe(pooled), -1).view(b, self.k, -1)  # (B, k, C)
        mean = probs.mean(1)  # (B, C)
        total = -(mean * mean.clamp_min(1e-12).log()).sum(-1)
        expected = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean(1)
        return {
            "hidden_states": yk.view(b, self.k, t, d).mean(1),
            "epistemic_uncertainty": (total - expected).clamp_min(0.0),
            "probs": mean,
            "sample_probs": probs,
        }
