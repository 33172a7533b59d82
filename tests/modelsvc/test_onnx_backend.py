"""The ONNX Runtime encoder backend: the torch fp32 encoder's vectors, rankings and labels, on real text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from modelsvc import onnx_backend
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import EmbeddingCache, TextEncoder, pooled_forward, select_dtype
from modelsvc.inference import score_embeddings
from modelsvc.training import train, train_embeddings

pytestmark = pytest.mark.skipif(not onnx_backend.onnx_available(), reason="onnxruntime is not installed")


def test_auto_picks_onnx_for_the_frozen_encoder_on_cpus_without_amx() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    pick = onnx_backend.select_backend
    assert pick("auto", device=cpu, precision="auto", tuned=False, amx=False) == "onnx"  # also with AVX512-BF16
    assert pick("auto", device=cpu, precision="auto", tuned=False, amx=True) == "torch"  # bf16 weights on AMX
    assert pick("auto", device=cpu, precision="fp32", tuned=False, amx=True) == "onnx"
    assert pick("auto", device=cpu, precision="bf16", tuned=False, amx=False) == "torch"
    assert pick("auto", device=cuda, precision="auto", tuned=False, amx=False) == "torch"
    assert pick("onnx", device=cpu, precision="fp32", tuned=True) == "torch"
    assert pick("onnx", device=cuda, precision="fp32", tuned=False) == "torch"
    assert pick("onnx", device=cpu, precision="auto", tuned=False, amx=True) == "onnx"
    assert pick("torch", device=cpu, precision="fp32", tuned=False) == "torch"
    with pytest.raises(ValueError, match="encoder backend"):
        pick("tensorrt", device=cpu, precision="fp32", tuned=False)


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
    encoder = TextEncoder(ModelConfig(encoder=str(tiny_encoder_dir)), backend="onnx")
    assert encoder.backend == "onnx" and encoder.dtype == torch.float32
    vectors = encoder.encode(["a fine film", "a dull one"])
    assert encoder.backend == "torch" and vectors.shape[0] == 2 and np.isfinite(vectors).all()
    assert encoder.dtype == select_dtype("auto", torch.device("cpu"))  # torch's own choice again (bf16 where it pays)


def test_length_grouped_onnx_batches_give_the_torch_vectors(
    tiny_config: ModelConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALABEL_ONNX_DIR", str(tmp_path / "onnx"))
    texts = [" ".join(["word"] * n) for n in (1, 2, 3, 5, 8, 13, 40)]  # the last one: several windows
    fast = TextEncoder(tiny_config, backend="onnx")
    got = fast.encode(texts)
    assert fast.backend == "onnx" and fast.forward_calls > 1  # several length groups, not one batch
    np.testing.assert_allclose(got, TextEncoder(tiny_config, backend="torch").encode(texts), atol=1e-5)


def test_a_failed_fusion_runs_the_unfused_graph(
    tiny_encoder_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("optimizer unavailable")

    monkeypatch.setattr(onnx_backend, "optimize", broken)
    encoder = TextEncoder(ModelConfig(encoder=str(tiny_encoder_dir), precision="fp32"), backend="torch")
    ids = torch.tensor([[101, 2023, 2003, 1037, 3185, 102], [101, 7592, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    session = onnx_backend.session_for(
        encoder.model, lambda model, i, m: pooled_forward(model, m, "mean_mid", input_ids=i),
        encoder_id=encoder.encoder_id, pooling="mean_mid", threads=1, cache_dir=tmp_path, fuse=True,
    )
    assert "graph fusion failed" in caplog.text and not list(tmp_path.glob("*fused*"))
    with torch.inference_mode():
        want = pooled_forward(encoder.model, mask, "mean_mid", input_ids=ids).numpy()
    np.testing.assert_allclose(onnx_backend.run(session, ids, mask), want, atol=1e-5)


@pytest.mark.slow
def test_the_fused_graph_predicts_what_torch_fp32_predicts_on_real_reviews(tmp_path: Path) -> None:
    texts, labels = load_builtin("rt-snippets")
    idx = np.random.default_rng(1).permutation(len(texts))[:240]
    texts, labels = [texts[i] for i in idx], [labels[i] for i in idx]
    reference = TextEncoder(ModelConfig(precision="fp32"), backend="torch")
    want = reference.encode(texts)
    session = onnx_backend.session_for(
        reference.model, lambda model, i, m: pooled_forward(model, m, "mean_mid", input_ids=i),
        encoder_id=reference.encoder_id, pooling="mean_mid", threads=2, cache_dir=tmp_path, fuse=True,
    )
    assert list(tmp_path.glob("*.fused-ort*.onnx"))  # the fused graph, cached beside the exported one
    fused = TextEncoder(ModelConfig(precision="fp32"), backend="onnx")
    fused._onnx_session = lambda threads: session  # type: ignore[method-assign]
    got = fused.encode(texts)
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.9999
    clf = train_embeddings(want[:200], labels[:200], label_names=["fresh", "rotten"],
                           encoder_id=reference.encoder_id, model_config=reference.config,
                           train_config=TrainConfig(seed=0)).classifier
    np.testing.assert_array_equal(score_embeddings(clf, got[200:]).predicted,
                                  score_embeddings(clf, want[200:]).predicted)
