"""manage.py embedding_cache_compact: older cache files rewritten with 16 KiB pages, a file in use left alone."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from modelsvc.encoder import EmbeddingCache


def old_cache(path, texts: list[str]) -> np.ndarray:
    """A cache file as every one was made before 16 KiB pages: SQLite's default 4 KiB, WAL."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
    vectors = np.random.default_rng(0).random((len(texts), 768), dtype=np.float32)
    cache = EmbeddingCache(path)
    cache.put_many("enc", texts, vectors)
    cache.close()
    return vectors


def test_every_cache_file_of_the_folder_is_compacted_and_keeps_its_vectors(settings, tmp_path, capsys) -> None:
    settings.EMBEDDING_CACHE_DIR = tmp_path
    texts = [f"text {i}" for i in range(40)]
    vectors = old_cache(tmp_path / "a.sqlite3", texts)
    old_cache(tmp_path / "b.sqlite3", texts[:5])
    call_command("embedding_cache_compact")
    out = capsys.readouterr().out
    assert "a.sqlite3: 40 vectors, pages 4096 -> 16384 B" in out and "b.sqlite3: 5 vectors" in out
    cache = EmbeddingCache(tmp_path / "a.sqlite3")
    assert cache.page_size() == 16384
    found = cache.get_many("enc", texts)
    assert all(np.array_equal(found[i], vectors[i]) for i in range(40))


def test_a_file_in_use_or_missing_is_named_and_left_as_it_was(tmp_path) -> None:
    path = tmp_path / "busy.sqlite3"
    old_cache(path, ["a", "b"])
    worker = sqlite3.connect(path)  # a worker holding the file
    worker.execute("SELECT COUNT(*) FROM embeddings").fetchall()
    try:
        with pytest.raises(CommandError, match="in use, left as they were.*busy.sqlite3"):
            call_command("embedding_cache_compact", str(path))
    finally:
        worker.close()
    assert EmbeddingCache(path).page_size() == 4096
    with pytest.raises(CommandError, match="no such cache file"):
        call_command("embedding_cache_compact", str(tmp_path / "missing.sqlite3"))
