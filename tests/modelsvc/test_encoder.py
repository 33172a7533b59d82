import math
import threading
from pathlib import Path

import numpy as np
import pytest

from modelsvc.config import ModelConfig
from modelsvc.encoder import (
    EmbeddingCache,
    TextEncoder,
    budget_batches,
    encoder_identity,
    length_batches,
    pool_hidden,
)


def test_long_document_is_split_into_windows_not_truncated(tiny_encoder: TextEncoder) -> None:
    cfg = tiny_encoder.config
    long_text = " ".join(f"word{i}" for i in range(60))
    n_tokens = len(tiny_encoder.tokenizer(long_text, add_special_tokens=False)["input_ids"])
    content = cfg.max_length - 2
    expected = 1 + math.ceil((n_tokens - content) / (content - cfg.stride))
    assert n_tokens > cfg.max_length
    before = tiny_encoder.windows_encoded
    out = tiny_encoder.encode([long_text, "short"])
    assert tiny_encoder.windows_encoded - before == expected + 1
    assert out.shape == (2, tiny_encoder.hidden_size) and out.dtype == np.float32
    # every token of the long document is inside some window
    win = tiny_encoder.windows([long_text])
    seen = {t for ids in win.input_ids for t in ids}
    assert set(tiny_encoder.tokenizer(long_text, add_special_tokens=False)["input_ids"]) <= seen


def test_dynamic_padding_does_not_change_vectors(tiny_encoder: TextEncoder) -> None:
    texts = ["a", "a much longer sentence with many more words in it", "mid length text"]
    together = tiny_encoder.encode(texts)
    alone = np.vstack([tiny_encoder.encode([t]) for t in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_cache_hits_skip_the_encoder(tiny_encoder: TextEncoder, tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    texts = ["one text", "another text", "one text"]
    first = tiny_encoder.encode(texts, cache=cache)
    calls = tiny_encoder.forward_calls
    assert len(cache) == 2  # duplicates stored once
    second = tiny_encoder.encode(texts, cache=cache)
    assert tiny_encoder.forward_calls == calls
    np.testing.assert_array_equal(first, second)
    # a new text costs one more encoder batch, old ones still come from the cache
    tiny_encoder.encode(texts + ["brand new"], cache=cache)
    assert tiny_encoder.forward_calls == calls + 1


def _race_writers_on_fresh_file(path: Path, vecs: np.ndarray) -> list[BaseException]:
    """One writer thread per row of ``vecs``, all opening the new cache file at the same instant."""
    start = threading.Barrier(len(vecs))
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        start.wait()
        try:
            EmbeddingCache(path).put_many("enc", [f"t{i}"], vecs[i : i + 1])
        except BaseException as exc:  # noqa: BLE001 - reported by the caller's assertion
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(len(vecs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_cache_is_shared_between_connections_and_threads(tiny_encoder: TextEncoder, tmp_path: Path) -> None:
    # Workers opening a fresh cache together: the WAL switch of one must not fail another with
    # "database is locked" (SQLite skips its busy handler for that pragma). The race is rare per
    # file, so it is run on many fresh files.
    n = 8
    vecs = np.arange(4 * n, dtype=np.float32).reshape(n, 4)
    for attempt in range(40):
        path = tmp_path / f"emb{attempt}" / "emb.sqlite"
        assert _race_writers_on_fresh_file(path, vecs) == []
    other = EmbeddingCache(path)
    found = other.get_many("enc", [f"t{i}" for i in range(n + 1)])
    assert sorted(found) == list(range(n))
    np.testing.assert_array_equal(found[2], vecs[2])
    assert other.get_many("other-encoder", ["t0"]) == {}
    assert (path.parent / "emb.sqlite-wal").exists() or other._conn().execute("PRAGMA journal_mode").fetchone()[
        0
    ] == "wal"


def test_encoder_identity_tracks_weights_and_pooling(tiny_config: ModelConfig) -> None:
    a = encoder_identity(tiny_config)
    assert a == encoder_identity(tiny_config)
    assert a != encoder_identity(ModelConfig(**{**tiny_config.to_dict(), "pooling": "mean_max"}))
    assert a != encoder_identity(ModelConfig())


def test_pooling_respects_mask() -> None:
    import torch

    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, -100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    assert pool_hidden(hidden, mask, "mean").tolist() == [[2.0, 2.0]]
    assert pool_hidden(hidden, mask, "mean_max").tolist() == [[2.0, 2.0, 3.0, 3.0]]
    assert pool_hidden(hidden, mask, "cls").tolist() == [[1.0, 1.0]]
    # mean_mid: last layer's mean, then the middle layer's mean (layer 1 of embeddings + 2 layers)
    layers = [hidden * 0, hidden * 10, hidden]
    assert pool_hidden(hidden, mask, "mean_mid", layers).tolist() == [[2.0, 2.0, 20.0, 20.0]]
    with pytest.raises(ValueError, match="hidden states"):
        pool_hidden(hidden, mask, "mean_mid")


def test_default_mean_mid_encoder_doubles_the_width(tiny_config: ModelConfig) -> None:
    encoder = TextEncoder(tiny_config)
    mean_only = TextEncoder(ModelConfig(**{**tiny_config.to_dict(), "pooling": "mean"}))
    texts = ["what is the capital of peru", "who wrote hamlet"]
    vecs = encoder.encode(texts)
    assert vecs.shape == (2, 2 * mean_only.hidden_size) == (2, encoder.hidden_size)
    # the first half is exactly the last layer's mean pooling
    np.testing.assert_allclose(vecs[:, : mean_only.hidden_size], mean_only.encode(texts), atol=1e-5)
    assert encoder.encoder_id.endswith("/mean_mid") and ModelConfig().pooling == "mean_mid"


def test_bad_config_values_are_rejected() -> None:
    with pytest.raises(ValueError, match="stride"):
        ModelConfig(max_length=32, stride=20)
    with pytest.raises(ValueError, match="samples"):
        ModelConfig(samples=0)
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"d_model": 3})


def test_the_cache_stays_under_its_size_bound_evicting_the_least_recently_used(tmp_path) -> None:
    import sqlite3

    bound = 400_000  # ~115 rows of 768 floats (~3.4 KB each in 16 KiB pages)
    path = tmp_path / "bounded.sqlite"
    cache = EmbeddingCache(path, max_bytes=bound)
    other = EmbeddingCache(path, max_bytes=bound)  # a second process writing to the same file
    rng = np.random.default_rng(0)

    def last_used(texts: list[str], at: int) -> None:  # an order of use that no two rows share
        with sqlite3.connect(path) as conn:
            keys = [EmbeddingCache.text_key(t) for t in texts]
            conn.execute(f"UPDATE embeddings SET used_at = ? WHERE text_sha IN ({','.join('?' * len(keys))})",
                         [at, *keys])

    cache.put_many("enc", [f"cold {i}" for i in range(40)], rng.random((40, 768), dtype=np.float32))
    cache.put_many("enc", [f"warm {i}" for i in range(40)], rng.random((40, 768), dtype=np.float32))
    last_used([f"cold {i}" for i in range(40)], 100)
    last_used([f"warm {i}" for i in range(40)], 200)
    for batch in range(4):
        texts = [f"new {batch} {i}" for i in range(20)]
        (cache, other)[batch % 2].put_many("enc", texts, rng.random((20, 768), dtype=np.float32))
        last_used(texts, 300 + batch)
        # Within one write's rows (20 x 3 KB ~ 4 pages): a deleted row frees room inside its 16 KiB page,
        # not the page, and the next writes fill that room before the file grows.
        assert cache.used_bytes() <= bound + 4 * EmbeddingCache.PAGE_SIZE
    cold = len(cache.get_many("enc", [f"cold {i}" for i in range(40)]))
    warm = len(cache.get_many("enc", [f"warm {i}" for i in range(40)]))
    assert cold < 40  # something was evicted ...
    assert warm == 40 or cold == 0  # ... the least recently used first
    assert len(cache.get_many("enc", [f"new 3 {i}" for i in range(20)])) == 20
    # Right after an eviction (by either process) the file is at its new size: no process evicts again
    # until it has grown past it, so the room the deleted rows left is filled, not evicted a second time.
    with sqlite3.connect(path) as conn:
        after = conn.execute("SELECT value FROM cache_state WHERE name = 'bytes_after_evict'").fetchone()
    assert after is not None and after[0] > bound
    assert cache.used_bytes() > bound and cache.used_bytes() <= after[0]
    assert cache.evict() == other.evict() == 0


def test_a_read_refreshes_a_stale_last_use(tmp_path) -> None:
    import sqlite3
    import time

    path = tmp_path / "touch.sqlite"
    cache = EmbeddingCache(path)
    cache.put_many("enc", ["a"], np.ones((1, 4), dtype=np.float32))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE embeddings SET used_at = 1")
    cache.get_many("enc", ["a"])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT used_at FROM embeddings").fetchone()[0] >= time.time() - 60


def test_a_read_only_cache_reads_and_never_writes(tmp_path) -> None:
    path = tmp_path / "ro.sqlite"
    EmbeddingCache(path).put_many("enc", ["known"], np.ones((1, 4), dtype=np.float32))
    view = EmbeddingCache(path, read_only=True)
    view.put_many("enc", ["ad hoc"], np.ones((1, 4), dtype=np.float32))
    assert len(view.get_many("enc", ["known", "ad hoc"])) == 1
    assert len(view) == 1


def test_length_batches_cover_every_window_once_within_the_budget_and_pad_less() -> None:
    lengths = np.random.default_rng(0).integers(5, 62, size=200)  # short reviews: 5-61 tokens
    batches = length_batches(lengths, 8192)
    assert sorted(np.concatenate(batches).tolist()) == list(range(200))
    assert all(len(idx) * lengths[idx].max() <= 8192 for idx in batches)
    assert [int(lengths[idx].max()) for idx in batches] == sorted((int(lengths[idx].max()) for idx in batches),
                                                                   reverse=True)  # longest first

    def padded(cut: list[np.ndarray]) -> int:
        return sum(len(idx) * int(lengths[idx].max()) for idx in cut)

    assert padded(batches) < 1.1 * lengths.sum() < padded(list(budget_batches(lengths, 8192)))
    # one window over the budget is a batch alone; nothing in, nothing out
    assert [idx.tolist() for idx in length_batches(np.array([300, 10]), 256)] == [[0], [1]]
    assert length_batches(np.array([], dtype=np.int64), 256) == []



def test_a_new_cache_uses_16k_pages_and_compact_rewrites_an_old_file_keeping_every_vector(tmp_path) -> None:
    import sqlite3

    assert EmbeddingCache(tmp_path / "new.sqlite").page_size() == EmbeddingCache.PAGE_SIZE == 16384
    path = tmp_path / "old.sqlite"  # a file from before the page size was set: SQLite's default pages, WAL
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
    cache = EmbeddingCache(path)
    assert cache.page_size() == 4096
    vectors = np.random.default_rng(0).random((30, 768), dtype=np.float32)
    cache.put_many("enc", [f"t{i}" for i in range(30)], vectors)
    other = sqlite3.connect(path)  # a worker holding the file: refused, nothing changed
    other.execute("SELECT COUNT(*) FROM embeddings").fetchall()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        cache.compact()
    assert cache.page_size() == 4096 and len(cache) == 30
    other.close()
    assert cache.compact() == (4096, 16384)
    found = cache.get_many("enc", [f"t{i}" for i in range(30)])
    assert all(np.array_equal(found[i], vectors[i]) for i in range(30))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.put_many("enc", ["after"], vectors[:1])  # still a working cache
    assert len(cache) == 31
