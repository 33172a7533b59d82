"""The CUDA path with the packaged encoder on real text; skipped where torch sees no GPU.

On a GPU host (a CUDA build of torch, e.g. the `gpu` worker image) these run with the rest of the
suite: the encoder on the GPU under autocast must give the CPU's vectors, and training, scoring and
fine-tuning must work end to end on the device.
"""

import numpy as np
import pytest
import torch

from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import TextEncoder
from modelsvc.inference import encoder_for, score_texts
from modelsvc.training import train

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this host"),
]


def _questions(n: int) -> tuple[list[str], list[str]]:
    texts, labels = load_builtin("trec")
    idx = np.random.default_rng(0).permutation(len(texts))[:n]
    return [texts[i] for i in idx], [labels[i] for i in idx]


def test_cuda_encoder_matches_the_cpu_vectors() -> None:
    texts, _ = _questions(200)
    gpu = TextEncoder(ModelConfig(device="cuda"))
    cpu = TextEncoder(ModelConfig(device="cpu", precision="fp32"))
    assert gpu.device.type == "cuda"
    a, b = gpu.encode(texts), cpu.encode(texts)
    cosine = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.999


def test_cuda_train_score_and_fine_tune() -> None:
    texts, labels = _questions(600)
    names = sorted(set(labels))
    config = ModelConfig(device="cuda")
    frozen = train(texts[:400], labels[:400], label_names=names, model_config=config)
    res = score_texts(frozen.classifier, texts[400:], encoder=TextEncoder(config))
    assert np.mean(np.array(names)[res.predicted] == np.array(labels[400:])) > 0.6
    tuned = train(
        texts[:400],
        labels[:400],
        label_names=names,
        model_config=config,
        train_config=TrainConfig(fine_tune="top2", fine_tune_epochs=1),
    )
    encoder = encoder_for(tuned.classifier)
    assert encoder.device.type == "cuda" and encoder.encoder_id == tuned.classifier.encoder_id
    res = score_texts(tuned.classifier, texts[400:], encoder=encoder)
    assert np.isfinite(res.probs).all() and res.probs.shape == (200, len(names))
