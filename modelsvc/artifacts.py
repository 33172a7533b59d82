"""Classifier artifacts: ``head.safetensors`` + ``classifier.json``, written atomically. No pickle.

Layout of an artifact folder::

    classifier.json     format_version, model config, label names, encoder identity, temperature,
                        calibration, metrics, versions; a multi-label (sigmoid) classifier also
                        ``label_temperatures`` and ``thresholds``, one per label
    head.safetensors    the head's tensors (w1, b1, w2, b2, feature_mean, feature_std)
    encoder_layers.safetensors
                        only for a fine-tuned classifier: the tuned encoder layers (``layer.<i>.*``);
                        ``classifier.json`` then has ``fine_tune`` (mode, first layer, layer count,
                        base encoder identity, digest) and ``encoder_id`` = the tuned identity
    features.safetensors, features.json
                        only for ``features="hybrid"``: the TF-IDF idf weights and SVD components
                        (``word_idf``, ``char_idf``, ``components``) and the two vocabularies in
                        column order; ``classifier.json`` then has ``features`` (dims, term counts).
                        For ``features="sparse"`` the same two files hold the sparse path: the idf
                        weights, the regression's ``coef`` (C, V) and ``intercept`` (C,), the
                        vocabularies; ``features`` then has ``kind: "sparse"``, the weight w and C

``save_classifier`` writes into a temporary sibling folder and renames it into place, so a reader
never sees a half-written artifact. ``load_classifier`` validates everything and raises
``ArtifactError`` naming what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from modelsvc.config import ModelConfig
from modelsvc.features import HybridFeatures, SparsePath
from modelsvc.model import CalibrationSet, Classifier, build_head
from modelsvc.tuning import TunedLayers

FORMAT_VERSION = 1
META_FILE = "classifier.json"
WEIGHTS_FILE = "head.safetensors"
TUNED_FILE = "encoder_layers.safetensors"
FEATURES_FILE = "features.safetensors"
VOCABULARY_FILE = "features.json"
CALIBRATION_SET_FILE = "calibration_set.safetensors"


class ArtifactError(RuntimeError):
    """An artifact folder is missing, incomplete, corrupt or incompatible."""


def artifact_digest(directory: str | os.PathLike[str]) -> str:
    """sha256 (hex) over every file of an artifact folder: each name, its size, its bytes, names sorted.

    The service stores it when the artifact is saved and passes it back to ``load_classifier``, so an
    artifact changed afterwards (a swapped head, an edited ``classifier.json``) refuses to load.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ArtifactError(f"artifact folder {folder} does not exist")
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    import numpy
    import transformers

    from modelsvc import __version__

    return {
        "modelsvc": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
    }


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_classifier(classifier: Classifier, directory: str | os.PathLike[str]) -> Path:
    """Write ``classifier`` to ``directory`` atomically (replacing an existing artifact)."""
    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in classifier.head.state_dict().items()}
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format_version": str(FORMAT_VERSION)})
        meta = {
            "format_version": FORMAT_VERSION,
            "model_config": classifier.config.to_dict(),
            "label_names": list(classifier.label_names),
            "encoder_id": classifier.encoder_id,
            "in_dim": classifier.head.in_dim,
            "temperature": classifier.temperature,
            "calibration": classifier.calibration,
            "metrics": classifier.metrics,
            "versions": _versions(),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        for key in ("label_temperatures", "thresholds"):
            values = getattr(classifier, key)
            if values is not None:
                meta[key] = [float(v) for v in values]
        tuned = classifier.tuned
        if tuned is not None:
            save_file(
                {k: v.contiguous() for k, v in tuned.tensors.items()},
                str(tmp / TUNED_FILE),
                metadata={"format_version": str(FORMAT_VERSION), "digest": tuned.digest},
            )
            meta["fine_tune"] = {
                "mode": tuned.mode,
                "first_layer": tuned.first,
                "n_layers": tuned.n_layers,
                "base_encoder_id": tuned.base_encoder_id,
                "digest": tuned.digest,
                "file": TUNED_FILE,
            }
        if classifier.features is not None:
            meta["features"] = _save_features(classifier.features, tmp)
        if classifier.calibration_set is not None:
            cal = classifier.calibration_set
            save_file(
                {"logits": torch.from_numpy(cal.logits).contiguous(), "labels": torch.from_numpy(cal.labels)},
                str(tmp / CALIBRATION_SET_FILE),
            )
            meta["calibration_set"] = {"n": len(cal), "file": CALIBRATION_SET_FILE}
        with (tmp / META_FILE).open("w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=2, sort_keys=True, allow_nan=False)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if target.exists():
            old = target.parent / f".{target.name}.old-{os.getpid()}-{time.monotonic_ns()}"
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """The validated ``classifier.json`` of an artifact folder."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ArtifactError(f"artifact folder {folder} does not exist")
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise ArtifactError(f"{folder}: missing file {META_FILE}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{meta_path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path}: expected a JSON object")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{meta_path}: format version {version!r}, this modelsvc reads {FORMAT_VERSION}")
    for key in ("model_config", "label_names", "encoder_id", "in_dim", "temperature"):
        if key not in meta:
            raise ArtifactError(f"{meta_path}: missing key {key!r}")
    return meta


def _load_tensors(folder: Path, name: str, *, what: str = "") -> dict[str, torch.Tensor]:
    """A safetensors file of the artifact, or an ``ArtifactError`` naming what is missing or corrupt."""
    path = folder / name
    if not path.is_file():
        raise ArtifactError(f"{folder}: missing file {name}{what}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"{path}: corrupt weights ({exc})") from exc


def load_classifier(
    directory: str | os.PathLike[str],
    *,
    expected_labels: Sequence[str] | None = None,
    expected_digest: str | None = None,
    encoder: str | None = None,
) -> Classifier:
    """Load and validate an artifact.

    ``expected_labels`` checks the label map (names and order). ``expected_digest`` (from
    ``artifact_digest`` at save time) refuses an artifact whose files changed since. ``encoder`` is
    the encoder this host runs and replaces the one the artifact records: an artifact never chooses
    which local folder is loaded as an encoder (its own tuned layers are checked against that base).
    """
    folder = Path(directory)
    if expected_digest is not None:
        found_digest = artifact_digest(folder)
        if found_digest != expected_digest:
            raise ArtifactError(
                f"{folder}: its files changed since it was saved (sha256 {found_digest[:12]}..., "
                f"pinned {expected_digest[:12]}...): refusing to load a tampered artifact"
            )
    meta = read_metadata(folder)
    try:
        config = ModelConfig.from_dict(meta["model_config"])
        if encoder is not None:
            config = dataclasses.replace(config, encoder=encoder)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{folder / META_FILE}: invalid model_config ({exc})") from exc
    labels = meta["label_names"]
    if not isinstance(labels, list) or len(labels) < 2 or len(set(labels)) != len(labels):
        raise ArtifactError(f"{folder / META_FILE}: label_names must be >= 2 distinct names")
    if expected_labels is not None and list(expected_labels) != labels:
        raise ArtifactError(f"label map mismatch: artifact has {labels}, expected {list(expected_labels)}")
    weights_path = folder / WEIGHTS_FILE
    tensors = _load_tensors(folder, WEIGHTS_FILE)
    head = build_head(config, int(meta["in_dim"]), len(labels))
    expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in tensors.items()}
    if set(found) != set(expected):
        raise ArtifactError(f"{weights_path}: tensors {sorted(found)} do not match the head {sorted(expected)}")
    for name, shape in expected.items():
        if found[name] != shape:
            hint = " (label map mismatch)" if name in ("w2", "b2") else ""
            raise ArtifactError(f"{weights_path}: tensor {name} has shape {found[name]}, expected {shape}{hint}")
    head.load_state_dict(tensors)
    head.eval()
    temperature = float(meta["temperature"])
    if not temperature > 0:
        raise ArtifactError(f"{folder / META_FILE}: temperature must be > 0")
    tuned = _load_tuned(folder, meta) if meta.get("fine_tune") is not None else None
    features = _load_features(folder, meta, config, len(labels))
    calibration_set = _load_calibration_set(folder, meta, len(labels))
    per_label = {key: _per_label(meta, key, len(labels), folder) for key in ("label_temperatures", "thresholds")}
    return Classifier(
        config=config,
        label_names=[str(x) for x in labels],
        encoder_id=str(meta["encoder_id"]),
        head=head,
        temperature=temperature,
        calibration=dict(meta.get("calibration") or {}),
        metrics=dict(meta.get("metrics") or {}),
        tuned=tuned,
        features=features,
        calibration_set=calibration_set,
        label_temperatures=per_label["label_temperatures"],
        thresholds=per_label["thresholds"],
    )


def _save_features(features: HybridFeatures | SparsePath, folder: Path) -> dict[str, Any]:
    """Write a hybrid classifier's TF-IDF + SVD state, or a sparse path, into ``folder``; returns its
    ``classifier.json`` entry."""
    tfidf = features.tfidf if isinstance(features, SparsePath) else features
    tensors = {
        "word_idf": torch.from_numpy(tfidf.word_idf.copy()),
        "char_idf": torch.from_numpy(tfidf.char_idf.copy()),
    }
    if isinstance(features, SparsePath):
        tensors["coef"] = torch.from_numpy(features.coef.copy())
        tensors["intercept"] = torch.from_numpy(features.intercept.copy())
    else:
        tensors["components"] = torch.from_numpy(features.components.copy())
    save_file(tensors, str(folder / FEATURES_FILE), metadata={"format_version": str(FORMAT_VERSION)})
    vocabularies = {"word": tfidf.word_vocabulary, "char": tfidf.char_vocabulary}
    with (folder / VOCABULARY_FILE).open("w", encoding="utf-8") as fh:
        json.dump(vocabularies, fh, ensure_ascii=False)
        fh.flush()
        os.fsync(fh.fileno())
    entry: dict[str, Any] = {
        "word_terms": len(tfidf.word_vocabulary),
        "char_terms": len(tfidf.char_vocabulary),
        "file": FEATURES_FILE,
        "vocabulary_file": VOCABULARY_FILE,
    }
    if isinstance(features, SparsePath):
        return {"kind": "sparse", "weight": features.weight, **entry}
    return {"kind": "hybrid", "dims": features.dims, **entry}


def _load_features(
    folder: Path, meta: dict[str, Any], config: ModelConfig, n_classes: int
) -> HybridFeatures | SparsePath | None:
    """The hybrid TF-IDF + SVD state or the sparse path, present exactly when ``config.features`` asks for it."""
    where = folder / META_FILE
    info = meta.get("features")
    kind = config.features
    if kind == "embedding":
        if info is not None:
            raise ArtifactError(f"{where}: features state present but model_config.features is 'embedding'")
        return None
    if not isinstance(info, dict):
        raise ArtifactError(f"{where}: model_config.features is {kind!r} but the features entry is missing")
    if info.get("kind", "hybrid") != kind:  # artifacts before the sparse path carry no kind: hybrid
        raise ArtifactError(f"{where}: features entry is {info.get('kind')!r}, model_config.features is {kind!r}")
    tensors = _load_tensors(folder, FEATURES_FILE, what=f" (the {kind} TF-IDF state)")
    path = folder / VOCABULARY_FILE
    if not path.is_file():
        raise ArtifactError(f"{folder}: missing file {VOCABULARY_FILE} (the {kind} vocabularies)")
    features: HybridFeatures | SparsePath
    try:
        vocabularies = json.loads(path.read_text(encoding="utf-8"))
        words = [str(t) for t in vocabularies["word"]]
        chars = [str(t) for t in vocabularies["char"]]
        tfidf = HybridFeatures(
            word_vocabulary=words,
            char_vocabulary=chars,
            word_idf=tensors["word_idf"].numpy(),
            char_idf=tensors["char_idf"].numpy(),
            components=tensors["components"].numpy() if kind == "hybrid" else np.zeros((0, len(words) + len(chars))),
        )
        if kind == "sparse":
            features = SparsePath(
                tfidf=tfidf,
                coef=tensors["coef"].numpy(),
                intercept=tensors["intercept"].numpy(),
                weight=float(info["weight"]),
            )
        else:
            features = tfidf
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{folder}: invalid {kind} features state ({exc})") from exc
    if isinstance(features, SparsePath):
        if features.n_classes != n_classes:
            raise ArtifactError(f"{where}: the sparse path scores {features.n_classes} classes, the head {n_classes}")
    elif features.dims != info.get("dims"):
        raise ArtifactError(f"{where}: features dims {info.get('dims')!r}, the components carry {features.dims}")
    return features


def _load_calibration_set(folder: Path, meta: dict[str, Any], n_labels: int) -> CalibrationSet | None:
    """The randomly drawn training documents' out-of-fold samples, when the artifact has them."""
    info = meta.get("calibration_set")
    if info is None:
        return None
    tensors = _load_tensors(folder, CALIBRATION_SET_FILE, what=" (the calibration set)")
    try:
        cal = CalibrationSet(logits=tensors["logits"].numpy(), labels=tensors["labels"].numpy())
    except (KeyError, ValueError) as exc:
        raise ArtifactError(f"{folder / CALIBRATION_SET_FILE}: invalid calibration set ({exc})") from exc
    if cal.logits.shape[2] != n_labels or len(cal) != info.get("n") or (len(cal) and cal.labels.max() >= n_labels):
        raise ArtifactError(f"{folder / CALIBRATION_SET_FILE}: does not match the label map or its count")
    return cal


def _per_label(meta: dict[str, Any], key: str, n_labels: int, folder: Path) -> list[float] | None:
    """A per-label list of a multi-label artifact (temperatures > 0, thresholds in (0, 1)), validated."""
    values = meta.get(key)
    if values is None:
        if meta["model_config"].get("output") == "sigmoid":
            raise ArtifactError(f"{folder / META_FILE}: a multi-label artifact needs {key!r}")
        return None
    if not isinstance(values, list) or len(values) != n_labels:
        raise ArtifactError(f"{folder / META_FILE}: {key} must list one number per label ({n_labels})")
    out = [float(v) for v in values]
    low_ok = all(v > 0 for v in out)
    high_ok = key == "label_temperatures" or all(v < 1 for v in out)
    if not (low_ok and high_ok):
        raise ArtifactError(f"{folder / META_FILE}: {key} out of range: {out}")
    return out


def _load_tuned(folder: Path, meta: dict[str, Any]) -> TunedLayers:
    """The tuned encoder layers named by ``meta["fine_tune"]``; their digest and identity must match."""
    info = meta["fine_tune"]
    where = folder / META_FILE
    if not isinstance(info, dict) or any(
        k not in info for k in ("mode", "first_layer", "n_layers", "base_encoder_id", "digest")
    ):
        raise ArtifactError(f"{where}: fine_tune must name mode, first_layer, n_layers, base_encoder_id, digest")
    path = folder / TUNED_FILE
    tensors = _load_tensors(folder, TUNED_FILE, what=" (the fine-tuned encoder layers)")
    try:
        tuned = TunedLayers(
            mode=str(info["mode"]),
            first=int(info["first_layer"]),
            n_layers=int(info["n_layers"]),
            base_encoder_id=str(info["base_encoder_id"]),
            tensors=tensors,
        )
    except ValueError as exc:
        raise ArtifactError(f"{path}: {exc}") from exc
    if tuned.digest != info["digest"]:
        raise ArtifactError(
            f"{path}: tuned layers digest {tuned.digest} does not match {info['digest']} in {META_FILE}"
        )
    if tuned.encoder_id != meta["encoder_id"]:
        raise ArtifactError(
            f"{where}: encoder_id {meta['encoder_id']!r} is not the tuned identity {tuned.encoder_id!r}"
        )
    return tuned
