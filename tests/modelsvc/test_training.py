import numpy as np
import pytest

from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.encoder import TextEncoder
from modelsvc.inference import score_embeddings, score_texts
from modelsvc.training import TrainingError, TrainResult, stratified_split, train, train_embeddings
from tests.modelsvc.conftest import toy_corpus


def _emb(n_per_class: list[int], seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c, n in enumerate(n_per_class):
        center = np.zeros(8)
        center[c] = 4.0
        xs.append(center + rng.normal(size=(n, 8)))
        ys += [f"c{c}"] * n
    return np.vstack(xs).astype(np.float32), ys


def test_trained_model_separates_toy_classes(tiny_trained: TrainResult, tiny_encoder: TextEncoder) -> None:
    texts, labels = toy_corpus(40, seed=1)
    res = score_texts(tiny_trained.classifier, texts, encoder=tiny_encoder)
    acc = np.mean(
        [tiny_trained.classifier.label_names[p] == y for p, y in zip(res.predicted, labels, strict=True)]
    )
    assert acc >= 0.9
    assert tiny_trained.split_sizes["calibration"] > 0 and tiny_trained.classifier.temperature > 0
    assert {"accuracy", "ece", "auroc_error"} <= set(tiny_trained.metrics)


def test_cold_start_with_two_labels_per_class() -> None:
    emb, labels = _emb([2, 2, 2])
    result = train_embeddings(emb, labels, label_names=["c0", "c1", "c2"], encoder_id="x")
    assert result.split_sizes == {"train": 6, "validation": 0, "calibration": 0}
    assert result.classifier.temperature == 1.0 and "skipped" in result.calibration
    res = score_embeddings(result.classifier, emb)
    assert res.probs.shape == (6, 3)
    np.testing.assert_allclose(res.probs.sum(1), 1.0, rtol=1e-6)


def test_imbalanced_data_with_class_weights_finds_the_minority() -> None:
    emb, labels = _emb([300, 12])
    result = train_embeddings(
        emb, labels, label_names=["c0", "c1"], encoder_id="x", train_config=TrainConfig(seed=3)
    )
    test_emb, test_labels = _emb([50, 50], seed=9)
    res = score_embeddings(result.classifier, test_emb)
    minority_recall = np.mean(res.predicted[50:] == 1)
    assert minority_recall >= 0.8


def test_training_is_seeded() -> None:
    emb, labels = _emb([20, 20])
    a = train_embeddings(
        emb, labels, label_names=["c0", "c1"], encoder_id="x", train_config=TrainConfig(seed=5)
    )
    b = train_embeddings(
        emb, labels, label_names=["c0", "c1"], encoder_id="x", train_config=TrainConfig(seed=5)
    )
    for (ka, va), (kb, vb) in zip(
        a.classifier.head.state_dict().items(), b.classifier.head.state_dict().items(), strict=True
    ):
        assert ka == kb and np.array_equal(va.numpy(), vb.numpy())
    assert a.classifier.temperature == b.classifier.temperature


def test_stratified_split_keeps_every_class_in_both_parts() -> None:
    y = np.array([0] * 10 + [1] * 5 + [2] * 2)
    keep, held = stratified_split(y, 0.2, np.random.default_rng(0))
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(17))
    assert set(y[held]) == {0, 1} and set(y[keep]) == {0, 1, 2}


def test_progress_reports_stages(tiny_config: ModelConfig) -> None:
    seen: list[tuple[str, float]] = []
    texts, labels = toy_corpus(12)
    train(
        texts,
        labels,
        label_names=["neg", "pos"],
        model_config=tiny_config,
        train_config=TrainConfig(max_epochs=3),
        progress=lambda s, f: seen.append((s, f)),
    )
    stages = [s for s, _ in seen]
    assert stages[0] == "encode" and "fit" in stages and stages[-1] == "calibrate"
    assert all(0.0 <= f <= 1.0 for _, f in seen)


def test_bad_labels_fail_before_encoding(tiny_config: ModelConfig) -> None:
    with pytest.raises(TrainingError, match="unknown label 'maybe'"):
        train(["a", "b"], ["pos", "maybe"], label_names=["neg", "pos"], model_config=tiny_config)
    with pytest.raises(TrainingError, match="no labeled documents"):
        train([], [], label_names=["neg", "pos"], model_config=tiny_config)
    with pytest.raises(TrainingError, match="2 texts but 1 labels"):
        train(["a", "b"], ["pos"], label_names=["neg", "pos"], model_config=tiny_config)
