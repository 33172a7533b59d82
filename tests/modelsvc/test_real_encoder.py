"""Train and score with the packaged all-MiniLM-L6-v2 on real rt-snippets documents."""

from pathlib import Path

import numpy as np
import pytest

from modelsvc.artifacts import load_classifier, save_classifier
from modelsvc.attribution import attribute
from modelsvc.calibration import evaluate_predictions
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.fitting import encode_labels
from modelsvc.inference import score_texts
from modelsvc.training import train


@pytest.mark.slow
def test_packaged_encoder_learns_real_sentiment(tmp_path: Path) -> None:
    texts, labels = load_builtin("rt-snippets")
    idx = np.random.default_rng(0).permutation(len(texts))[:500]
    texts, labels = [texts[i] for i in idx], [labels[i] for i in idx]
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    encoder = TextEncoder(ModelConfig())
    result = train(
        texts[:300],
        labels[:300],
        label_names=["fresh", "rotten"],
        cache=cache,
        encoder=encoder,
        train_config=TrainConfig(seed=0),
    )
    folder = save_classifier(result.classifier, tmp_path / "model")
    clf = load_classifier(folder)
    calls = encoder.forward_calls
    res = score_texts(clf, texts[300:], cache=cache, encoder=encoder)
    y = encode_labels(labels[300:], clf.label_names)
    metrics = evaluate_predictions(res.probs_uncalibrated, res.probs, y, res.uncertainty())
    assert metrics["accuracy"] >= 0.62  # TF-IDF + LR on 300 labels reaches about 0.6
    assert metrics["auroc_error"] is not None and metrics["auroc_error"] > 0.55
    assert res.mutual_info.std() > 0  # uncertainty is not constant
    # re-scoring the same documents hits the cache only
    calls = encoder.forward_calls
    again = score_texts(clf, texts[300:], cache=cache, encoder=encoder)
    assert encoder.forward_calls == calls
    np.testing.assert_allclose(again.probs, res.probs, atol=1e-6)
    words = attribute(clf, texts[300], encoder=encoder, steps=16)
    assert [w for w, _ in words] == texts[300].split()
