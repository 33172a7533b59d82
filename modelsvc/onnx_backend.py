"""ONNX Runtime for the frozen encoder on CPUs without native bf16: the same vectors, faster in fp32.

The packaged encoder and its pooling are exported once with ``torch.onnx.export`` (TorchScript
exporter, dynamic batch and sequence axes) into a local cache folder, named by the encoder's
identity, and loaded into an ``onnxruntime.InferenceSession`` (all graph optimizations: fused
attention, LayerNorm and GELU). Nothing is downloaded: the weights are the local folder's.

``select_backend("auto", ...)`` picks ONNX Runtime on a CPU without native bf16 (where the torch
path runs fp32) and torch elsewhere (bf16 weights on AMX / AVX512-BF16 CPUs and CUDA measured
faster: docs/MODELSVC.md). Any failure to import, export or load falls back to torch with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

Backend = Literal["auto", "torch", "onnx"]
BACKENDS = ("auto", "torch", "onnx")
OPSET = 17

log = logging.getLogger(__name__)
_lock = threading.Lock()
_sessions: dict[tuple[str, int], Any] = {}


def onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def select_backend(backend: str, *, device: torch.device, dtype: torch.dtype, tuned: bool) -> str:
    """``torch`` or ``onnx`` for this encoder; ValueError for an unknown name.

    ONNX only for the frozen encoder on the CPU in fp32 (a fine-tuned encoder's layers change per
    model, and bf16 / CUDA stay with torch); ``onnx`` asked for where it cannot run falls back too.
    """
    if backend not in BACKENDS:
        raise ValueError(f"encoder backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch" or tuned or device.type != "cpu" or not onnx_available():
        return "torch"
    if backend == "auto" and dtype != torch.float32:
        return "torch"
    return "onnx"


def default_cache_dir() -> Path:
    """Where exported graphs live: ``$ALABEL_ONNX_DIR``, else ``$XDG_CACHE_HOME/alabel/onnx``."""
    explicit = os.environ.get("ALABEL_ONNX_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "alabel" / "onnx"


#: (model, input ids (B, T), attention mask (B, T)) -> pooled (B, H'): the encoder's own forward + pooling.
PooledForward = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


class _Pooled(torch.nn.Module):
    """The encoder plus its window pooling, as one graph: (B, T) ids and mask -> (B, H') float32."""

    def __init__(self, model: torch.nn.Module, forward: PooledForward) -> None:
        super().__init__()
        self.model, self.pooled_forward = model, forward

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.pooled_forward(self.model, input_ids, attention_mask)


def export(model: torch.nn.Module, forward: PooledForward, path: Path) -> None:
    """Write ``model`` + pooling as an ONNX graph at ``path`` (atomically: temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _Pooled(model, forward).eval()
    ids = torch.tensor([[101, 2023, 2003, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with torch.inference_mode():
            torch.onnx.export(
                wrapper,
                (ids, mask),
                tmp,
                input_names=["input_ids", "attention_mask"],
                output_names=["pooled"],
                dynamic_axes={"input_ids": {0: "b", 1: "t"}, "attention_mask": {0: "b", 1: "t"}, "pooled": {0: "b"}},
                opset_version=OPSET,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def session_for(
    model: torch.nn.Module, forward: PooledForward, *, encoder_id: str, pooling: str, threads: int, cache_dir: Path
) -> Any:
    """An InferenceSession for ``model`` and its pooling ``forward`` (exported on first use), one per
    graph and thread count per process."""
    import onnxruntime as ort

    digest = hashlib.sha256(f"{encoder_id}|{pooling}|opset{OPSET}|torch{torch.__version__}".encode()).hexdigest()[:16]
    path = cache_dir / f"encoder-{digest}.onnx"
    key = (str(path), threads)
    with _lock:
        if key in _sessions:
            return _sessions[key]
        if not path.is_file():
            log.info("exporting the encoder to %s (once)", path)
            export(model, forward, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        _sessions[key] = session
        return session


def run(session: Any, ids: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Pooled vectors (B, H') float32 for one padded batch."""
    out = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    return np.asarray(out, dtype=np.float32)
