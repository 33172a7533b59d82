import json
from pathlib import Path

import numpy as np
import pytest

from modelsvc.artifacts import FORMAT_VERSION, ArtifactError, load_classifier, save_classifier
from modelsvc.fitting import TrainResult
from modelsvc.inference import score_embeddings


def test_round_trip_gives_identical_scores(tiny_trained: TrainResult, tmp_path: Path) -> None:
    clf = tiny_trained.classifier
    out = save_classifier(clf, tmp_path / "model")
    assert sorted(p.name for p in out.iterdir()) == ["classifier.json", "head.safetensors"]
    loaded = load_classifier(out, expected_labels=["neg", "pos"])
    assert loaded.label_names == clf.label_names and loaded.encoder_id == clf.encoder_id
    assert loaded.temperature == clf.temperature and loaded.config == clf.config
    emb = np.random.default_rng(0).normal(size=(5, clf.head.in_dim)).astype(np.float32)
    np.testing.assert_allclose(score_embeddings(loaded, emb).probs, score_embeddings(clf, emb).probs)
    meta = json.loads((out / "classifier.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION and "torch" in meta["versions"]


def test_overwrite_is_atomic_and_leaves_no_temp_folders(tiny_trained: TrainResult, tmp_path: Path) -> None:
    save_classifier(tiny_trained.classifier, tmp_path / "model")
    save_classifier(tiny_trained.classifier, tmp_path / "model")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def _saved(tiny_trained: TrainResult, tmp_path: Path) -> Path:
    return save_classifier(tiny_trained.classifier, tmp_path / "model")


def test_missing_files_are_named(tiny_trained: TrainResult, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        load_classifier(tmp_path / "nope")
    folder = _saved(tiny_trained, tmp_path)
    (folder / "head.safetensors").unlink()
    with pytest.raises(ArtifactError, match="missing file head.safetensors"):
        load_classifier(folder)


def test_corrupt_weights_are_reported(tiny_trained: TrainResult, tmp_path: Path) -> None:
    folder = _saved(tiny_trained, tmp_path)
    data = (folder / "head.safetensors").read_bytes()
    (folder / "head.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="corrupt weights"):
        load_classifier(folder)


def test_wrong_format_version_is_reported(tiny_trained: TrainResult, tmp_path: Path) -> None:
    folder = _saved(tiny_trained, tmp_path)
    meta = json.loads((folder / "classifier.json").read_text())
    meta["format_version"] = 99
    (folder / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="format version 99"):
        load_classifier(folder)


def test_label_map_mismatch_is_reported(tiny_trained: TrainResult, tmp_path: Path) -> None:
    folder = _saved(tiny_trained, tmp_path)
    with pytest.raises(ArtifactError, match="label map mismatch"):
        load_classifier(folder, expected_labels=["pos", "neg"])
    meta = json.loads((folder / "classifier.json").read_text())
    meta["label_names"] = ["neg", "pos", "meh"]
    (folder / "classifier.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="label map mismatch"):
        load_classifier(folder)


def test_a_tampered_artifact_refuses_to_load(tiny_trained: TrainResult, tmp_path: Path) -> None:
    from modelsvc.artifacts import artifact_digest

    folder = _saved(tiny_trained, tmp_path)
    pinned = artifact_digest(folder)
    assert load_classifier(folder, expected_digest=pinned).label_names == tiny_trained.classifier.label_names
    meta_path = folder / "classifier.json"
    meta = json.loads(meta_path.read_text())
    meta["temperature"] = 0.01  # an overconfident model, swapped in after the save
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="tampered"):
        load_classifier(folder, expected_digest=pinned)


def test_the_host_encoder_replaces_the_one_an_artifact_names(tiny_trained: TrainResult, tmp_path: Path) -> None:
    folder = _saved(tiny_trained, tmp_path)
    meta_path = folder / "classifier.json"
    meta = json.loads(meta_path.read_text())
    meta["model_config"]["encoder"] = "/home/someone/untrusted-encoder"
    meta_path.write_text(json.dumps(meta))
    host = tiny_trained.classifier.config.encoder
    assert load_classifier(folder, encoder=host).config.encoder == host
