"""The ONNX Runtime encoder backend: the torch fp32 encoder's vectors, rankings and labels, on real text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modelsvc import onnx_backend
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.inference import score_embeddings
from modelsvc.training import train

pytestmark = pytest.mark.skipif(not onnx_backend.onnx_available(), reason="onnxruntime is not installed")


def test_auto_picks_onnx_for_the_frozen_encoder_on_the_cpu_unless_bf16_is_named() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert onnx_backend.select_backend("auto", device=cpu, precision="auto", tuned=False) == "onnx"
    assert onnx_backend.select_backend("auto", device=cpu, precision="fp32", tuned=False) == "onnx"
    assert onnx_backend.select_backend("auto", device=cpu, precision="bf16", tuned=False) == "torch"
    assert onnx_backend.select_backend("auto", device=cuda, precision="auto", tuned=False) == "torch"
    assert onnx_backend.select_backend("onnx", device=cpu, precision="fp32", tuned=True) == "torch"
    assert onnx_backend.select_backend("onnx", device=cuda, precision="fp32", tuned=False) == "torch"
    assert onnx_backend.select_backend("torch", device=cpu, precision="fp32", tuned=False) == "torch"
    with pytest.raises(ValueError, match="encoder backend"):
        onnx_backend.select_backend("tensorrt", device=cpu, precision="fp32", tuned=False)


@pytest.mark.slow
def test_onnx_vectors_rankings_and_labels_match_torch_fp32_on_real_reviews(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALABEL_ONNX_DIR", str(tmp_path / "onnx"))
    texts, labels = load_builtin("rt-snippets")
    idx = np.random.default_rng(0).permutation(len(texts))[:500]
    texts, labels = [texts[i] for i in idx], [labels[i] for i in idx]
    texts[0] = " ".join(texts[:40])  # one document longer than a window: several windows, one vector
    config = ModelConfig(precision="fp32")
    reference = TextEncoder(config, backend="torch")
    fast = TextEncoder(config, backend="onnx")
    assert fast.backend == "onnx" and fast.encoder_id == reference.encoder_id  # one cache namespace
    want = reference.encode(texts)
    got = fast.encode(texts)
    assert list((tmp_path / "onnx").glob("*.onnx"))  # exported once, at first use
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.99999
    np.testing.assert_allclose(got, want, atol=1e-4)

    result = train(
        texts[:300],
        labels[:300],
        label_names=["fresh", "rotten"],
        encoder=reference,
        cache=EmbeddingCache(tmp_path / "emb.sqlite"),
        train_config=TrainConfig(seed=0),
    )
    by_torch = score_embeddings(result.classifier, want[300:], return_samples=True)
    by_onnx = score_embeddings(result.classifier, got[300:], return_samples=True)
    np.testing.assert_array_equal(by_onnx.predicted, by_torch.predicted)
    np.testing.assert_array_equal(np.argsort(-by_onnx.entropy), np.argsort(-by_torch.entropy))
    np.testing.assert_allclose(by_onnx.probs, by_torch.probs, atol=1e-4)


def test_a_failed_export_falls_back_to_torch(monkeypatch: pytest.MonkeyPatch, tiny_encoder_dir: Path) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("exporter unavailable")

    monkeypatch.setattr(onnx_backend, "session_for", broken)
    encoder = TextEncoder(ModelConfig(encoder=str(tiny_encoder_dir), precision="fp32"), backend="onnx")
    assert encoder.backend == "onnx"
    vectors = encoder.encode(["a fine film", "a dull one"])
    assert encoder.backend == "torch" and vectors.shape[0] == 2 and np.isfinite(vectors).all()
