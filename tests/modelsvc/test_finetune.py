"""fine_tune="topN" / "full": training, identity, cache separation, artifacts, CLI (tiny in-process BERT)."""

import contextlib
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from modelsvc import finetune
from modelsvc.artifacts import TUNED_FILE, ArtifactError, load_classifier, save_classifier
from modelsvc.cli import main
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.finetune import TopLayers, embed_prefix, encode_prefix
from modelsvc.fitting import TrainingError, TrainResult, train_embeddings
from modelsvc.inference import encoder_for, score_texts
from modelsvc.training import train
from modelsvc.tuning import transformer_layers
from tests.modelsvc.conftest import tiny_model_config, toy_corpus

LABELS = ["neg", "pos"]


def _config(folder: Path) -> ModelConfig:
    return tiny_model_config(folder)


@contextlib.contextmanager
def _validation_losses(step: float) -> Iterator[None]:
    """Make the stopping criterion see losses 1, 1+step, 1+2*step, ... (epoch 0 = the probe).

    The toy classes are separable, so the probe alone is already perfect there and whether a joint
    epoch beats it is a coin toss; the gradient steps themselves are real.
    """
    count = itertools.count()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(finetune, "_val_loss", lambda *args: 1.0 + step * next(count))
        yield


def _train(
    folder: Path, fine_tune: str = "top1", seed: int = 0, n: int = 60, step: float = -0.1, refit: bool = True
) -> TrainResult:
    texts, labels = toy_corpus(n)
    config = TrainConfig(seed=seed, max_epochs=40, fine_tune=fine_tune, fine_tune_epochs=2, fine_tune_refit=refit)
    with _validation_losses(step):
        return train(texts, labels, label_names=LABELS, model_config=_config(folder), train_config=config)


@pytest.fixture(scope="module")
def tuned(tiny_encoder_dir: Path) -> TrainResult:
    return _train(tiny_encoder_dir)


def _layer_state(model: torch.nn.Module, i: int) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in transformer_layers(model)[i].state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fine_tune": "top0"}, "fine_tune"),
        ({"fine_tune": "partial"}, "fine_tune"),
        ({"fine_tune": "top-2"}, "fine_tune"),
        ({"encoder_learning_rate": 0.0}, "encoder_learning_rate"),
        ({"fine_tune_epochs": 0}, "fine_tune_epochs"),
        ({"fine_tune_batch_size": 0}, "fine_tune_batch_size"),
    ],
)
def test_bad_fine_tune_settings_are_named(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)  # type: ignore[arg-type]


def test_more_layers_than_the_encoder_has_is_a_training_error(tiny_encoder_dir: Path) -> None:
    texts, labels = toy_corpus(12)
    with pytest.raises(TrainingError, match="only 2 transformer layers"):
        train(
            texts,
            labels,
            label_names=LABELS,
            model_config=_config(tiny_encoder_dir),
            train_config=TrainConfig(fine_tune="top3"),
        )
    with pytest.raises(TrainingError, match="needs the texts"):
        train_embeddings(
            np.zeros((4, 8)),
            ["neg", "pos"] * 2,
            label_names=LABELS,
            encoder_id="x",
            train_config=TrainConfig(fine_tune="top1"),
        )


def test_only_the_top_layers_change(tuned: TrainResult, tiny_encoder_dir: Path) -> None:
    from transformers import AutoModel

    pristine = AutoModel.from_pretrained(tiny_encoder_dir)
    clf = tuned.classifier
    assert clf.tuned is not None and clf.tuned.first == 1 and clf.tuned.mode == "top1"
    assert set(clf.tuned.tensors) == {f"layer.1.{k}" for k in _layer_state(pristine, 1)}
    assert tuned.calibration["fine_tune"]["epochs"] >= 1 and tuned.calibration["method"] == "held_out"
    encoder = encoder_for(clf)
    # the tuned copy: embeddings and layer 0 as shipped, layer 1 trained
    assert _same(_layer_state(encoder.model, 0), _layer_state(pristine, 0))
    assert not _same(_layer_state(encoder.model, 1), _layer_state(pristine, 1))
    assert torch.equal(encoder.model.embeddings.word_embeddings.weight, pristine.embeddings.word_embeddings.weight)
    # the shared base encoder (per-process LRU) was never modified by training
    for i in (0, 1):
        assert _same(_layer_state(encoder.base_model, i), _layer_state(pristine, i))


def test_prefix_path_gives_the_encoders_vectors(tiny_encoder_dir: Path) -> None:
    encoder = TextEncoder(_config(tiny_encoder_dir))
    texts = ["short one", "a much longer document that needs several windows " * 3, "third"]
    expected = encoder.encode(texts)
    for first in (0, 1):  # full (middle layer tuned) and top1 (middle layer frozen, from the prefix)
        prefix = encode_prefix(encoder, texts, first)
        assert prefix.n_docs == 3 and len(prefix.states) > 3  # the long text has several windows
        got = embed_prefix(TopLayers(encoder, first), prefix)
        np.testing.assert_allclose(got, expected, atol=1e-5)


def test_tuned_encoder_runs_once_per_document_and_k_samples_in_one_call(tuned: TrainResult) -> None:
    clf = tuned.classifier
    encoder = encoder_for(clf)
    texts, _ = toy_corpus(10, seed=3)
    windows = len(encoder.windows(texts).input_ids)
    calls_before = clf.head.forward_calls
    res = score_texts(clf, texts, encoder=encoder, return_samples=True)
    assert encoder.windows_encoded == windows
    assert clf.head.forward_calls == calls_before + 1
    assert res.samples is not None and res.samples.shape == (10, clf.config.samples, 2)


def test_round_trip_gives_identical_scores_from_text(tuned: TrainResult, tmp_path: Path) -> None:
    clf = tuned.classifier
    out = save_classifier(clf, tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == ["classifier.json", TUNED_FILE, "head.safetensors"]
    loaded = load_classifier(out, expected_labels=LABELS)
    assert loaded.encoder_id == clf.encoder_id and loaded.tuned is not None
    assert loaded.tuned.digest == clf.tuned.digest  # type: ignore[union-attr]
    texts, _ = toy_corpus(12, seed=4)
    np.testing.assert_array_equal(score_texts(loaded, texts).probs, score_texts(clf, texts).probs)


def test_tampered_or_missing_tuned_layers_are_refused(tuned: TrainResult, tmp_path: Path) -> None:
    out = save_classifier(tuned.classifier, tmp_path / "model")
    meta_path = out / "classifier.json"
    meta = json.loads(meta_path.read_text())
    meta["fine_tune"]["digest"] = "0" * 16
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="digest"):
        load_classifier(out)
    (out / TUNED_FILE).unlink()
    with pytest.raises(ArtifactError, match=TUNED_FILE):
        load_classifier(out)


def test_identity_differs_from_frozen_and_the_cache_is_not_shared(
    tuned: TrainResult, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    clf = tuned.classifier
    frozen = TextEncoder(_config(tiny_encoder_dir))
    assert clf.encoder_id != frozen.encoder_id and clf.encoder_id.startswith(frozen.encoder_id + "+top1@")
    assert _train(tiny_encoder_dir, seed=1).classifier.encoder_id != clf.encoder_id  # every retrain: a new identity
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    texts, _ = toy_corpus(8, seed=5)
    frozen_vecs = frozen.encode(texts, cache=cache)
    encoder = encoder_for(clf)
    first = score_texts(clf, texts, cache=cache, encoder=encoder)  # frozen rows exist, but are not served
    assert encoder.forward_calls > 0
    assert not np.allclose(first.embeddings, frozen_vecs)
    calls = encoder.forward_calls
    again = score_texts(clf, texts, cache=cache, encoder=encoder)  # re-scoring: from the tuned rows
    assert encoder.forward_calls == calls
    np.testing.assert_array_equal(again.probs, first.probs)
    np.testing.assert_array_equal(frozen.encode(texts, cache=cache), frozen_vecs)  # frozen rows intact
    with pytest.raises(ValueError, match="encoder mismatch"):
        score_texts(clf, texts, encoder=frozen)


def test_the_refit_trains_on_every_label_for_the_chosen_epochs(
    tuned: TrainResult, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = tuned.calibration["fine_tune"]
    assert info["refit"] == {"epochs": info["best_epoch"], "n": 60} and tuned.split_sizes["refit"] == 60
    epochs: list[int] = []
    real = finetune._joint_stepper

    def counting(top, head, prefix, y, tr, train_config):  # type: ignore[no-untyped-def]
        step = real(top, head, prefix, y, tr, train_config)

        def epoch() -> float:
            epochs.append(len(tr))
            return step()

        return epoch

    monkeypatch.setattr(finetune, "_joint_stepper", counting)
    result = _train(tiny_encoder_dir)
    # the split's joint epochs on the fit part without its validation part, then the refit on all 60
    best = result.calibration["fine_tune"]["best_epoch"]
    assert best >= 1 and epochs[-best:] == [60] * best and all(n < 60 for n in epochs[:-best])
    # the deployed model is the refit one with the split's temperature
    split = _train(tiny_encoder_dir, refit=False)
    assert result.classifier.temperature == split.classifier.temperature
    assert result.classifier.encoder_id != split.classifier.encoder_id
    assert "refit" not in split.calibration["fine_tune"] and "refit" not in split.split_sizes


def test_fine_tuning_is_seeded(tuned: TrainResult, tiny_encoder_dir: Path) -> None:
    again = _train(tiny_encoder_dir)
    assert again.classifier.encoder_id == tuned.classifier.encoder_id
    assert again.classifier.temperature == tuned.classifier.temperature


def test_no_better_joint_epoch_keeps_the_encoder_frozen(tiny_encoder_dir: Path) -> None:
    result = _train(tiny_encoder_dir, step=0.1)  # every joint epoch worse than the probe
    assert result.classifier.tuned is None
    assert result.classifier.encoder_id == TextEncoder(_config(tiny_encoder_dir)).encoder_id
    assert result.calibration["fine_tune"]["best_epoch"] == 0 and "skipped" in result.calibration["fine_tune"]
    assert result.calibration["fine_tune"]["epochs"] == finetune.FINE_TUNE_PATIENCE
    # what fine_tune="frozen" trains on the same labels: cross-fitted on all of them
    assert result.calibration["method"] == "cross_fitted" and result.split_sizes["train"] == 60


def test_cold_start_keeps_the_encoder_frozen(tiny_encoder_dir: Path) -> None:
    result = _train(tiny_encoder_dir, n=4)  # 2 labels per class: no validation part to stop on
    assert result.classifier.tuned is None
    assert result.classifier.encoder_id == TextEncoder(_config(tiny_encoder_dir)).encoder_id
    assert "skipped" in result.calibration["fine_tune"]


def test_cli_trains_with_fine_tune_and_names_bad_values(
    tiny_encoder_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pandas as pd

    texts, labels = toy_corpus(40)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(tmp_path / "train.csv", index=False)
    common = ["train", "--data", str(tmp_path / "train.csv"), "--encoder", str(tiny_encoder_dir)]
    common += ["--max-length", "16", "--epochs", "20", "--samples", "4", "--fine-tune-epochs", "1"]
    with _validation_losses(-0.1):
        assert main([*common, "--out", str(tmp_path / "m"), "--fine-tune", "top1"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "+top1@" in summary["encoder_id"]
    assert (
        main(
            [
                "score",
                "--model",
                str(tmp_path / "m"),
                "--data",
                str(tmp_path / "train.csv"),
                "--out",
                str(tmp_path / "s.jsonl"),
            ]
        )
        == 0
    )
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 40
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "bad"), "--fine-tune", "top2x"]) == 2
    assert "fine_tune" in capsys.readouterr().err
