import numpy as np
import pytest
import torch

from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.crossfit import fold_assignment, n_folds, out_of_fold_logits
from modelsvc.encoder import TextEncoder
from modelsvc.fitting import TrainingError, TrainResult, stratified_split, train_embeddings
from modelsvc.inference import score_embeddings, score_texts
from modelsvc.training import train
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
    acc = np.mean([tiny_trained.classifier.label_names[p] == y for p, y in zip(res.predicted, labels, strict=True)])
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
        emb, labels, label_names=["c0", "c1"], encoder_id="x", train_config=TrainConfig(seed=3, class_weights=True)
    )
    test_emb, test_labels = _emb([50, 50], seed=9)
    res = score_embeddings(result.classifier, test_emb)
    minority_recall = np.mean(res.predicted[50:] == 1)
    assert minority_recall >= 0.8


def test_training_is_seeded() -> None:
    emb, labels = _emb([20, 20])
    a = train_embeddings(emb, labels, label_names=["c0", "c1"], encoder_id="x", train_config=TrainConfig(seed=5))
    b = train_embeddings(emb, labels, label_names=["c0", "c1"], encoder_id="x", train_config=TrainConfig(seed=5))
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


def test_cross_fitted_calibration_uses_every_labeled_item() -> None:
    emb, labels = _emb([20, 20, 20])
    result = train_embeddings(emb, labels, label_names=["c0", "c1", "c2"], encoder_id="x")
    assert result.calibration["method"] == "cross_fitted" and result.calibration["folds"] == 5
    assert result.calibration["n_temperature"] == 60 and result.metrics["n"] == 60
    assert result.metrics["split"] == "out_of_fold"
    assert result.split_sizes == {"train": 60, "validation": 60, "calibration": 60, "folds": 5}


def test_fold_count_shrinks_to_the_smallest_class() -> None:
    emb, labels = _emb([30, 3])
    result = train_embeddings(emb, labels, label_names=["c0", "c1"], encoder_id="x")
    assert result.calibration["folds"] == 3
    assert result.classifier.head.n_members == 3 * ModelConfig().n_members  # 3 folds x heads per fold


def test_fold_heads_are_the_deployed_ensemble_members() -> None:
    emb, labels = _emb([25, 25])
    result = train_embeddings(
        emb, labels, label_names=["c0", "c1"], encoder_id="x", model_config=ModelConfig(n_members=2)
    )
    clf = result.classifier
    # 5 folds x 2 members per fold; the sample count is a whole number of draws per member
    assert clf.head.n_members == 10 and clf.config.n_members == 10
    assert clf.config.samples % 10 == 0 and clf.config.samples >= 16
    res = score_embeddings(clf, emb, return_samples=True)
    assert res.samples is not None and res.samples.shape == (50, clf.config.samples, 2)
    # the members were trained on different folds, so they disagree: non-zero epistemic uncertainty
    with torch.no_grad():  # eval mode: no dropout
        deterministic = torch.softmax(clf.head(torch.as_tensor(emb), k=10), -1)
    assert float(deterministic.std(1).max()) > 1e-3


def test_out_of_fold_metrics_are_honest_on_random_labels() -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(120, 64)).astype(np.float32)
    labels = [f"c{v}" for v in rng.integers(0, 2, size=120)]
    result = train_embeddings(
        emb,
        labels,
        label_names=["c0", "c1"],
        encoder_id="x",
        model_config=ModelConfig(hidden_dim=256, dropout=0.0),
        train_config=TrainConfig(weight_decay=0.0, patience=200, max_epochs=200),
    )
    in_sample = score_embeddings(result.classifier, emb)
    in_sample_acc = float(np.mean(in_sample.predicted == np.array([int(s[1]) for s in labels])))
    # the heads memorise their training folds, yet the reported (out-of-fold) accuracy is chance
    assert in_sample_acc >= 0.85
    assert result.metrics["accuracy"] <= 0.65


def test_fold_assignment_spreads_every_class_evenly() -> None:
    y = np.array([0] * 23 + [1] * 7 + [2] * 5)
    fold = fold_assignment(y, 5, np.random.default_rng(0))
    for c in range(3):
        assert set(fold[y == c]) == set(range(5))
    assert np.bincount(fold).max() - np.bincount(fold).min() <= 1
    assert n_folds(y, 5) == 5 and n_folds(np.array([0] * 9 + [1] * 4), 5) == 4
    assert n_folds(np.array([0] * 9 + [1] * 2), 5) == 0


def test_out_of_fold_logits_keep_only_the_own_folds_members() -> None:
    fold = np.array([0, 1, 2, 1])
    # (N=4, S=12, C=1): each sample's value is the member that drew it (3 folds x 2 members)
    logits = np.tile((np.arange(12) % 6).astype(np.float32)[None, :, None], (4, 1, 1))
    oof = out_of_fold_logits(logits, fold, members_per_fold=2)
    assert oof.shape == (4, 4, 1)
    assert set(oof[0, :, 0]) == {0, 1} and set(oof[1, :, 0]) == {2, 3} and set(oof[2, :, 0]) == {4, 5}


def test_single_split_path_is_still_available() -> None:
    emb, labels = _emb([20, 20])
    result = train_embeddings(emb, labels, label_names=["c0", "c1"], encoder_id="x", train_config=TrainConfig(folds=0))
    assert result.split_sizes["calibration"] == 8
    assert result.classifier.head.n_members == ModelConfig().n_members  # no fold ensemble
    assert result.metrics["split"] == "calibration"
