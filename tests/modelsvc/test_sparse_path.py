"""The sparse path: a logistic regression on TF-IDF n-grams beside the head, cross-fitted, saved, loaded, scored."""

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from modelsvc.artifacts import ArtifactError, load_classifier, save_classifier
from modelsvc.attribution import attribute
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.crossfit import fold_assignment
from modelsvc.encoder import TextEncoder
from modelsvc.features import SPARSE_WEIGHT_GRID, SparseDesign, SparsePath, fit_linear, fit_tfidf, linear_log_proba
from modelsvc.fitting import TrainingError, TrainResult, sparse_path_fit, train_embeddings
from modelsvc.inference import score_texts
from modelsvc.training import train

from .conftest import assert_loaded_scores_identically, tiny_model_config, toy_corpus


def sparse_config(folder: Path) -> ModelConfig:
    return ModelConfig(**{**tiny_model_config(folder).to_dict(), "features": "sparse"})


@pytest.fixture(scope="module")
def sparse_trained(tiny_encoder_dir: Path) -> TrainResult:
    texts, labels = toy_corpus(60)
    # Every fifth label flipped: the toy words separate the classes perfectly, and a regression trained
    # on clean toy labels would be certain of every document (no spread left to measure).
    labels = [("neg" if lab == "pos" else "pos") if i % 5 == 0 else lab for i, lab in enumerate(labels)]
    pool, _ = toy_corpus(200, seed=1)
    return train(
        texts,
        labels,
        label_names=["neg", "pos"],
        model_config=sparse_config(tiny_encoder_dir),
        train_config=TrainConfig(seed=0, max_epochs=60),
        unlabeled_texts=pool,
    )


def design(n: int = 90, seed: int = 0) -> tuple[SparseDesign, np.ndarray]:
    """Three classes whose words separate them: an informative TF-IDF design and its labels."""
    rng = np.random.default_rng(seed)
    words = [["red", "scarlet", "crimson"], ["green", "olive", "lime"], ["blue", "navy", "azure"]]
    y = np.arange(n) % 3
    texts = [f"item {' '.join(rng.choice(words[c], size=3))} {i}" for i, c in enumerate(y)]
    return SparseDesign.build(texts), y


def test_config_accepts_sparse() -> None:
    with pytest.raises(ValueError, match="features must be embedding, hybrid or sparse"):
        ModelConfig(features="tfidf")  # type: ignore[arg-type]
    config = ModelConfig(features="sparse")
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_the_regression_scores_every_class_and_a_binary_one_is_its_log_odds() -> None:
    d, y = design()
    coef, intercept = fit_linear(d.x, y, 4.0, 4)  # a fourth class no label names
    lp = linear_log_proba(d.x, coef, intercept)
    assert lp.shape == (90, 4)
    np.testing.assert_allclose(np.exp(lp).sum(1), 1.0, rtol=1e-6)
    assert (lp[:, 3] < np.log(1e-5)).all()  # the absent class: ~1e-6
    assert (lp.argmax(1) == y).mean() == 1.0
    from sklearn.linear_model import LogisticRegression

    binary = y[y < 2]
    xb = d.x[y < 2]
    coef, intercept = fit_linear(xb, binary, 4.0, 2)
    reference = LogisticRegression(C=4.0, max_iter=2000).fit(xb, binary).predict_log_proba(xb)
    np.testing.assert_allclose(linear_log_proba(xb, coef, intercept), reference, atol=1e-4)


def test_the_path_is_out_of_fold_and_chosen_on_out_of_fold_nll() -> None:
    d, y = design()
    fold = fold_assignment(y, 5, np.random.default_rng(1))
    head_oof = np.zeros((len(y), 4, 3), dtype=np.float32)  # a head that knows nothing: NLL log 3 at any T
    path, offsets, record = sparse_path_fit(d, y, fold, head_oof, 3)
    assert path.weight > 0 and record["weight"] == path.weight and record["C"] is not None
    assert record["nll_out_of_fold"] < record["nll_head_alone"] == pytest.approx(np.log(3), abs=1e-4)
    assert len(record["tried"]) == 3 * (len(SPARSE_WEIGHT_GRID) - 1)
    # Each fold's offsets come from a regression fitted on the other folds only.
    for f in range(5):
        held = fold == f
        coef, intercept = fit_linear(d.x[~held], y[~held], record["C"], 3)
        np.testing.assert_allclose(offsets[held], path.weight * linear_log_proba(d.x[held], coef, intercept), atol=1e-5)
    # The deployed regression is refitted on every label.
    coef, intercept = fit_linear(d.x, y, record["C"], 3)
    np.testing.assert_allclose(path.coef, coef, atol=1e-6)


def test_a_path_that_adds_nothing_is_switched_off() -> None:
    d, y = design()
    empty = SparseDesign(tfidf=d.tfidf, x=sp.csr_matrix((len(y), d.x.shape[1]), dtype=np.float32))
    fold = fold_assignment(y, 5, np.random.default_rng(1))
    rng = np.random.default_rng(0)
    head_oof = rng.normal(size=(len(y), 4, 3)).astype(np.float32) + 3 * np.eye(3)[y][:, None, :]
    path, offsets, record = sparse_path_fit(empty, y, fold, head_oof, 3)
    # No n-gram at all: the regression gives every document the balanced prior, which no weight improves on.
    assert path.weight == 0 and record["C"] is None and not offsets.any()
    assert path.offsets(["anything"]).tolist() == [[0.0, 0.0, 0.0]]


def test_a_sparse_model_scores_from_the_head_plus_its_offsets(sparse_trained: TrainResult) -> None:
    clf = sparse_trained.classifier
    assert isinstance(clf.features, SparsePath) and clf.config.features == "sparse"
    record = clf.calibration["sparse_path"]
    assert record["weight"] == clf.features.weight
    assert record["nll_out_of_fold"] <= record["nll_head_alone"]
    encoder = TextEncoder(clf.config)
    assert clf.head.in_dim == encoder.hidden_size  # the head reads the vectors alone
    texts, labels = toy_corpus(40, seed=7)
    res = score_texts(clf, texts, encoder=encoder, return_samples=True)
    assert res.embeddings.shape == (40, encoder.hidden_size)
    inputs = clf.head_inputs(texts, encoder.encode(texts))
    assert inputs.shape == (40, encoder.hidden_size + 2)
    head_only = clf.head.sample(torch.as_tensor(inputs[:, : encoder.hidden_size]), clf.config.samples)
    np.testing.assert_allclose(
        clf.sample_logits(inputs), head_only.numpy() + inputs[:, None, encoder.hidden_size :], rtol=1e-5, atol=1e-5
    )
    assert np.unique(np.round(res.mutual_info, 6)).size > 10  # uncertainty per document, the head's spread kept
    accuracy = float(np.mean(np.asarray(clf.label_names)[res.predicted] == np.asarray(labels)))
    assert accuracy > 0.8
    with pytest.raises(ValueError, match="reads head_inputs"):
        clf.sample_logits(encoder.encode(texts))  # the bare vectors would silently drop the path


def test_round_trip_scores_identically(sparse_trained: TrainResult, tmp_path: Path) -> None:
    clf = sparse_trained.classifier
    out = save_classifier(clf, tmp_path / "model")
    meta = json.loads((out / "classifier.json").read_text())
    assert meta["features"]["kind"] == "sparse" and meta["features"]["weight"] == clf.features.weight
    loaded = load_classifier(out, expected_labels=["neg", "pos"])
    assert isinstance(loaded.features, SparsePath) and loaded.config == clf.config
    assert_loaded_scores_identically(clf, loaded)


def test_an_artifact_whose_features_disagree_with_its_config_refuses_to_load(
    sparse_trained: TrainResult, tmp_path: Path
) -> None:
    out = save_classifier(sparse_trained.classifier, tmp_path / "model")
    meta = json.loads((out / "classifier.json").read_text())
    meta["model_config"]["features"] = "hybrid"
    (out / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="features entry is 'sparse', model_config.features is 'hybrid'"):
        load_classifier(out)


def test_too_few_labels_carry_the_path_switched_off(tiny_encoder_dir: Path) -> None:
    texts, labels = toy_corpus(4)  # 2 per class: the single-split path, nothing to cross-fit
    result = train(
        texts,
        labels,
        label_names=["neg", "pos"],
        model_config=sparse_config(tiny_encoder_dir),
        train_config=TrainConfig(seed=0, max_epochs=5),
    )
    clf = result.classifier
    assert isinstance(clf.features, SparsePath) and clf.features.weight == 0
    assert "too few labels" in clf.calibration["sparse_path"]["skipped"]
    res = score_texts(clf, texts, encoder=TextEncoder(clf.config))
    assert res.probs.shape == (4, 2)


def test_what_the_sparse_path_cannot_train_with_is_refused(tiny_encoder_dir: Path) -> None:
    config = sparse_config(tiny_encoder_dir)
    texts, labels = toy_corpus(20)
    with pytest.raises(TrainingError, match="features='sparse' is for the frozen tier"):
        train(
            texts, labels, label_names=["neg", "pos"], model_config=config, train_config=TrainConfig(fine_tune="top1")
        )
    emb = np.zeros((20, 4), dtype=np.float32)
    with pytest.raises(TrainingError, match="TF-IDF rows are given exactly when features is 'sparse'"):
        train_embeddings(emb, labels, label_names=["neg", "pos"], encoder_id="x", model_config=config)
    with pytest.raises(TrainingError, match="TF-IDF rows are given exactly when features is 'sparse'"):
        train_embeddings(emb, labels, label_names=["neg", "pos"], encoder_id="x", sparse=SparseDesign.build(texts))


def test_attribution_explains_a_sparse_path_model(sparse_trained: TrainResult) -> None:
    clf = sparse_trained.classifier
    pairs = attribute(clf, "the film was great and wonderful", encoder=TextEncoder(clf.config), steps=4)
    assert [w for w, _ in pairs] == ["the", "film", "was", "great", "and", "wonderful"]
    assert all(np.isfinite(s) for _, s in pairs)


def test_tfidf_alone_carries_no_svd_block() -> None:
    texts, _ = toy_corpus(40)
    tfidf = fit_tfidf(texts, seed=0)
    assert tfidf.dims == 0 and tfidf.sparse(texts).shape[1] == len(tfidf.word_vocabulary) + len(tfidf.char_vocabulary)
