"""Training from texts: encode (through the cache), then fit and calibrate on the vectors.

``train`` is the entry point: with the frozen encoder it encodes the texts (cache first) and hands
the vectors to ``modelsvc.fitting.train_embeddings``; with ``fine_tune`` other than ``"frozen"`` it
hands the texts to ``modelsvc.finetune.train_fine_tuned``. The fitting itself (folds, heads,
temperature, metrics) lives in ``modelsvc.fitting``, which both paths share.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.encoder import EmbeddingCache, ProgressFn, TextEncoder
from modelsvc.features import SparseDesign, fit_hybrid
from modelsvc.finetune import train_fine_tuned
from modelsvc.fitting import TrainingError, TrainResult, encode_labels, train_embeddings
from modelsvc.multilabel_fit import targets_matrix, train_multilabel_embeddings

__all__ = ["TrainResult", "TrainingError", "train", "train_embeddings"]


def train(
    texts: Sequence[str],
    labels: Sequence[Any],
    *,
    label_names: Sequence[str],
    model_config: ModelConfig | None = None,
    train_config: TrainConfig | None = None,
    cache: EmbeddingCache | None = None,
    encoder: TextEncoder | None = None,
    progress: ProgressFn | None = None,
    unlabeled_texts: Sequence[str] = (),
    calibration_weights: Sequence[float] | None = None,
) -> TrainResult:
    """Train a calibrated classifier on labeled texts.

    texts (N), labels (N) given as names in ``label_names`` (or int indices); with
    ``model_config.output == "sigmoid"`` (multi-label) labels are (N, C) 0/1 targets instead. ``progress`` is called
    with (stage, fraction) for stages ``encode``, ``fit``, ``calibrate``. Returns a TrainResult whose
    ``classifier`` can be saved with ``artifacts.save_classifier``. ``train_config.fine_tune`` other
    than ``"frozen"`` trains encoder layers too (``modelsvc.finetune.train_fine_tuned``; the cache is
    not read then: the tuned encoder's vectors are new).

    ``model_config.features == "hybrid"``: the TF-IDF + SVD block (``modelsvc.features``) is fitted on
    ``texts`` plus ``unlabeled_texts`` (the project's pool; no labels are used), seeded by
    ``train_config.seed``, and the classifier carries it (``Classifier.features``). ``"sparse"``: the
    same TF-IDF (no SVD) feeds the sparse path, cross-fitted beside the head (``fitting.sparse_path_fit``).

    ``calibration_weights`` (N,): importance weights of the labels in the temperature fit
    (``fitting.train_embeddings``); the fine-tuning path ignores them.
    """
    model_config = model_config or (encoder.config if encoder is not None else ModelConfig())
    if len(texts) != len(labels):
        raise TrainingError(f"{len(texts)} texts but {len(labels)} labels")
    if len(texts) == 0:
        raise TrainingError("no labeled documents to train on")
    multi = model_config.output == "sigmoid"
    if multi:  # labels: (N, C) 0/1 targets
        targets_matrix(labels, len(label_names))
    else:
        encode_labels(labels, [str(n) for n in label_names])  # fail fast, before encoding
    if encoder is not None:
        keys = ("encoder", "max_length", "stride", "pooling")
        if any(getattr(encoder.config, k) != getattr(model_config, k) for k in keys):
            raise TrainingError("encoder and model_config disagree on encoder/max_length/stride/pooling")
    if multi and train_config is not None and train_config.fine_tune != "frozen":
        raise TrainingError("multi-label training tunes the head only: fine_tune must be 'frozen'")
    if multi and model_config.features != "embedding":
        raise TrainingError("multi-label training reads the encoder's vectors alone: features must be 'embedding'")
    if train_config is not None and train_config.fine_tune != "frozen":
        if model_config.features != "embedding":
            raise TrainingError(
                f"features={model_config.features!r} is for the frozen tier: fine_tune="
                f"{train_config.fine_tune!r} trains on the encoder's vectors alone"
            )
        return train_fine_tuned(
            texts,
            labels,
            label_names=label_names,
            model_config=model_config,
            train_config=train_config,
            encoder=encoder,
            progress=progress,
        )
    encoder = encoder or TextEncoder(model_config)
    t0 = time.perf_counter()
    emb = encoder.encode(texts, cache=cache, progress=progress)
    encode_s = time.perf_counter() - t0
    features = None
    sparse = None
    seed = train_config.seed if train_config is not None else 0
    if model_config.features == "hybrid":
        features = fit_hybrid([*texts, *unlabeled_texts], dims=model_config.sparse_dims, seed=seed)
        emb = features.augment(texts, emb)
    elif model_config.features == "sparse":
        sparse = SparseDesign.build(texts, unlabeled_texts, seed=seed)
    features_s = time.perf_counter() - t0 - encode_s
    if multi:
        result = train_multilabel_embeddings(
            emb,
            labels,
            label_names=label_names,
            encoder_id=encoder.encoder_id,
            model_config=model_config,
            train_config=train_config,
            progress=progress,
        )
    else:
        result = train_embeddings(
            emb,
            labels,
            label_names=label_names,
            encoder_id=encoder.encoder_id,
            model_config=model_config,
            train_config=train_config,
            progress=progress,
            calibration_weights=None if calibration_weights is None else np.asarray(calibration_weights),
            sparse=sparse,
        )
    result.timings["encode"] = encode_s
    if features is not None:
        result.classifier.features = features
    if features is not None or sparse is not None:
        result.timings["features"] = features_s
    return result
