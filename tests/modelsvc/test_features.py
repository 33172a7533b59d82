"""Hybrid features: the TF-IDF + SVD block beside the embedding, trained, saved, loaded and scored."""

import json
from pathlib import Path

import numpy as np
import pytest

from modelsvc.artifacts import ArtifactError, load_classifier, save_classifier
from modelsvc.attribution import attribute
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.encoder import TextEncoder
from modelsvc.features import HybridFeatures, fit_hybrid
from modelsvc.fitting import TrainingError, TrainResult
from modelsvc.inference import score_texts
from modelsvc.training import train

from .conftest import assert_loaded_scores_identically, tiny_model_config, toy_corpus

DIMS = 12


@pytest.fixture(scope="module")
def hybrid_trained(tiny_encoder_dir: Path) -> TrainResult:
    config = ModelConfig(**{**tiny_model_config(tiny_encoder_dir).to_dict(), "features": "hybrid", "sparse_dims": DIMS})
    texts, labels = toy_corpus(60)
    pool, _ = toy_corpus(200, seed=1)
    return train(
        texts,
        labels,
        label_names=["neg", "pos"],
        model_config=config,
        train_config=TrainConfig(seed=0, max_epochs=60),
        unlabeled_texts=pool,
    )


def test_config_validates_features() -> None:
    with pytest.raises(ValueError, match="features must be embedding, hybrid or sparse"):
        ModelConfig(features="tfidf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sparse_dims"):
        ModelConfig(features="hybrid", sparse_dims=0)
    config = ModelConfig(features="hybrid", sparse_dims=64)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert ModelConfig().features == "embedding"


def test_fit_is_seeded_and_restorable() -> None:
    texts, _ = toy_corpus(80)
    a, b = fit_hybrid(texts, dims=8, seed=3), fit_hybrid(texts, dims=8, seed=3)
    np.testing.assert_array_equal(a.components, b.components)
    assert a.dims == 8 and a.word_vocabulary and a.char_vocabulary
    restored = HybridFeatures(a.word_vocabulary, a.char_vocabulary, a.word_idf, a.char_idf, a.components)
    np.testing.assert_array_equal(restored.transform(texts[:5]), a.transform(texts[:5]))
    emb = np.ones((5, 4), dtype=np.float32)
    assert a.augment(texts[:5], emb).shape == (5, 4 + 8)
    with pytest.raises(ValueError, match="3 texts but 5 embeddings"):
        a.augment(texts[:3], emb)


def test_a_corpus_too_small_for_terms_gives_an_empty_block() -> None:
    features = fit_hybrid(["one", "two"], dims=8)
    assert features.dims == 0
    assert features.transform(["three"]).shape == (1, 0)


def test_hybrid_head_reads_the_block_and_uncertainty_stays_per_document(
    hybrid_trained: TrainResult, tiny_encoder_dir: Path
) -> None:
    clf = hybrid_trained.classifier
    assert clf.features is not None and clf.features.dims == DIMS
    encoder = TextEncoder(clf.config)
    assert clf.head.in_dim == encoder.hidden_size + DIMS
    texts, labels = toy_corpus(40, seed=7)
    res = score_texts(clf, texts, encoder=encoder, return_samples=True)
    assert res.embeddings.shape == (40, encoder.hidden_size)  # the map projects the encoder's vectors only
    assert res.samples is not None and res.samples.shape[1] == clf.config.samples
    for name in ("entropy", "mutual_info", "margin"):
        values = getattr(res, name)
        assert np.unique(np.round(values, 6)).size > 10, name  # not one constant over documents
    assert res.mutual_info.max() > 0  # the fold ensemble and MC dropout still disagree
    accuracy = float(np.mean(np.asarray(clf.label_names)[res.predicted] == np.asarray(labels)))
    assert accuracy > 0.8


def test_round_trip_scores_identically(hybrid_trained: TrainResult, tmp_path: Path) -> None:
    clf = hybrid_trained.classifier
    out = save_classifier(clf, tmp_path / "model")
    names = sorted(p.name for p in out.iterdir())
    assert names == ["classifier.json", "features.json", "features.safetensors", "head.safetensors"]
    meta = json.loads((out / "classifier.json").read_text())
    assert meta["features"]["dims"] == DIMS and meta["model_config"]["features"] == "hybrid"
    loaded = load_classifier(out, expected_labels=["neg", "pos"])
    assert loaded.features is not None and loaded.config == clf.config
    assert_loaded_scores_identically(clf, loaded)


def test_a_hybrid_artifact_without_its_features_state_refuses_to_load(
    hybrid_trained: TrainResult, tmp_path: Path
) -> None:
    out = save_classifier(hybrid_trained.classifier, tmp_path / "model")
    (out / "features.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing file features.safetensors"):
        load_classifier(out)
    out = save_classifier(hybrid_trained.classifier, tmp_path / "model2")
    meta = json.loads((out / "classifier.json").read_text())
    del meta["features"]
    (out / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="features entry is missing"):
        load_classifier(out)


def test_an_embedding_artifact_carries_no_features(tiny_trained: TrainResult, tmp_path: Path) -> None:
    out = save_classifier(tiny_trained.classifier, tmp_path / "model")
    assert load_classifier(out).features is None
    assert not (out / "features.safetensors").exists()


def test_hybrid_with_a_fine_tuned_encoder_is_refused(tiny_encoder_dir: Path) -> None:
    config = ModelConfig(**{**tiny_model_config(tiny_encoder_dir).to_dict(), "features": "hybrid"})
    texts, labels = toy_corpus(20)
    with pytest.raises(TrainingError, match="features='hybrid' is for the frozen tier"):
        train(
            texts, labels, label_names=["neg", "pos"], model_config=config, train_config=TrainConfig(fine_tune="top1")
        )


def test_attribution_explains_a_hybrid_model(hybrid_trained: TrainResult) -> None:
    clf = hybrid_trained.classifier
    pairs = attribute(clf, "the film was great and wonderful", encoder=TextEncoder(clf.config), steps=4)
    assert [w for w, _ in pairs] == ["the", "film", "was", "great", "and", "wonderful"]
    assert all(np.isfinite(s) for _, s in pairs)
