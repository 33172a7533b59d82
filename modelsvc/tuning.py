"""Tuned encoder layers: which layers a ``fine_tune`` mode trains, their tensors and their identity.

A fine-tuned classifier (``TrainConfig.fine_tune = "topN"`` or ``"full"``, see ``modelsvc.finetune``)
carries a ``TunedLayers``: the trained fp32 tensors of transformer layers ``[first, n_layers)``,
named ``layer.<i>.<parameter>`` as in ``model.encoder.layer``. The encoder below ``first`` (and the
embedding layer) is the base encoder, unchanged.

Identity: ``<base encoder identity>+<mode>@<sha256 of the tuned tensors, 16 hex>``. It is what
``TextEncoder.encoder_id`` returns for the tuned encoder, so it namespaces the embedding cache:
vectors of the frozen encoder are never served to a tuned model, nor those of one tuned model to
another (every retrain gives new tensors, hence a new identity).
"""

from __future__ import annotations

import copy
import functools
import hashlib
from dataclasses import dataclass, field

import torch
from torch import nn

from modelsvc.config import fine_tune_top


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The encoder's stack of transformer layers (BERT-style ``model.encoder.layer``)."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"fine-tuning needs a BERT-style encoder (model.encoder.layer), got {type(model).__name__}")
    return layers


def first_tuned_layer(fine_tune: str, n_layers: int) -> int:
    """Index of the first layer that trains (``n_layers`` for frozen, 0 for full)."""
    top = fine_tune_top(fine_tune)
    top = n_layers if top is None else top
    if top > n_layers:
        raise ValueError(f"fine_tune={fine_tune!r} but the encoder has only {n_layers} transformer layers")
    return n_layers - top


def _layer_index(name: str) -> int:
    parts = name.split(".")
    if len(parts) < 3 or parts[0] != "layer" or not parts[1].isdigit():
        raise ValueError(f"tuned tensor name {name!r} is not 'layer.<index>.<parameter>'")
    return int(parts[1])


@dataclass(frozen=True)
class TunedLayers:
    """Trained tensors of the encoder's layers [first, n_layers) and the identity they give it."""

    mode: str
    """The ``fine_tune`` value that produced them, e.g. ``"top2"``."""
    first: int
    n_layers: int
    base_encoder_id: str
    """Identity of the frozen encoder the layers were tuned from."""
    tensors: dict[str, torch.Tensor] = field(repr=False)
    """``layer.<i>.<parameter>`` -> fp32 CPU tensor, for every parameter and buffer of layers >= first."""

    def __post_init__(self) -> None:
        if not 0 <= self.first < self.n_layers:
            raise ValueError(f"first tuned layer {self.first} out of range for {self.n_layers} layers")
        found = {_layer_index(name) for name in self.tensors}
        if found != set(range(self.first, self.n_layers)):
            raise ValueError(
                f"tuned tensors cover layers {sorted(found)}, expected {list(range(self.first, self.n_layers))}"
            )

    @functools.cached_property
    def digest(self) -> str:
        """sha256 (16 hex) over the names, dtypes, shapes and bytes of the tensors."""
        h = hashlib.sha256()
        for name in sorted(self.tensors):
            t = self.tensors[name].detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()[:16]

    @property
    def encoder_id(self) -> str:
        return f"{self.base_encoder_id}+{self.mode}@{self.digest}"

    @classmethod
    def from_layers(cls, layers: nn.ModuleList, *, first: int, n_layers: int, mode: str, base_id: str) -> TunedLayers:
        """Snapshot trained layers (the modules for indices first, first+1, ...) as fp32 CPU tensors."""
        tensors = {
            f"layer.{first + i}.{name}": t.detach().float().cpu().clone()
            for i, layer in enumerate(layers)
            for name, t in layer.state_dict().items()
        }
        return cls(mode=mode, first=first, n_layers=n_layers, base_encoder_id=base_id, tensors=tensors)

    def apply_to(self, model: nn.Module) -> nn.Module:
        """A copy of ``model`` (fp32) with the tuned layers loaded; ``model`` itself is not modified.

        Raises ValueError naming the mismatch when the tensors do not fit the model's layers.
        """
        tuned = copy.deepcopy(model).float()
        layers = transformer_layers(tuned)
        if len(layers) != self.n_layers:
            raise ValueError(f"tuned layers are for a {self.n_layers}-layer encoder, this one has {len(layers)}")
        for i in range(self.first, self.n_layers):
            prefix = f"layer.{i}."
            state = {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}
            try:
                layers[i].load_state_dict(state, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"tuned tensors of layer {i} do not fit the encoder: {exc}") from exc
        for p in tuned.parameters():
            p.requires_grad_(False)
        return tuned.eval()
