"""ONNX Runtime for the frozen encoder on CPUs without native bf16: the same vectors, faster in fp32.

The packaged encoder and its pooling are exported once with ``torch.onnx.export`` (TorchScript
exporter, eager attention, dynamic batch and sequence axes) into a local cache folder, named by the
encoder's identity, and loaded into an ``onnxruntime.InferenceSession`` with all graph optimizations.
Nothing is downloaded: the weights are the local folder's.

``session_for(..., fuse=True)`` first runs ONNX Runtime's transformer optimizer (``optimize_model``,
``model_type="bert"``: one ``Attention`` node per layer, ``SkipLayerNormalization``, ``BiasGelu``) and
caches the fused graph beside the exported one (keyed by the same identity and the ONNX Runtime
version); if fusion fails the unfused graph runs. It is not the default: on the shared 2-core EPYC it
was no faster (0.72-1.0x the unfused graph, docs/MODELSVC.md "Encoding speed from text");
``bench.encoder_paths`` measures it again.

``select_backend("auto", ...)`` picks ONNX Runtime for the frozen encoder on CPUs without AMX (with
the length-grouped batches of ``encoder.length_batches`` it beat torch fp32, and torch with bf16
weights on an AVX512-BF16 EPYC: docs/MODELSVC.md), torch with bf16 weights on AMX CPUs, torch on CUDA.
Any failure to import, export or load falls back to torch with a warning.
"""

from __future__ import annotations

import copy
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


def cpu_has_amx() -> bool:
    """True on CPUs with AMX (Intel Sapphire Rapids and later), where bf16 matmuls run ~2x AVX512-BF16's."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return "amx_bf16" in fh.read()
    except OSError:
        return False


def select_backend(
    backend: str, *, device: torch.device, precision: str, tuned: bool, amx: bool | None = None
) -> str:
    """``torch`` or ``onnx`` for this encoder; ValueError for an unknown name.

    ``auto``: ONNX Runtime (fp32) for the frozen encoder on a CPU without AMX: with length-grouped
    batches it beat torch fp32 and torch with bf16 weights on an AVX512-BF16 EPYC (1.34x, docs/MODELSVC.md
    "Encoding speed from text"), with the fp32 vectors. On AMX CPUs (``amx``, default: read from
    /proc/cpuinfo) torch's bf16 weights stay (they beat ONNX Runtime there: 50.8 vs 32.4 docs/s), as
    they do when ``precision="bf16"`` is named. A fine-tuned encoder's layers change per model, so it
    stays with torch, as does CUDA; ``onnx`` asked for where it cannot run falls back to torch.
    """
    if backend not in BACKENDS:
        raise ValueError(f"encoder backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch" or tuned or device.type != "cpu" or not onnx_available():
        return "torch"
    if backend == "auto" and (
        precision == "bf16" or (precision == "auto" and (cpu_has_amx() if amx is None else amx))
    ):
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
    # Eager attention exports as MatMul / Softmax / MatMul, the pattern the optimizer fuses into one
    # Attention node (SDPA exports as a form it does not recognise). A copy: the shared model keeps SDPA.
    model = copy.deepcopy(model)
    set_attn: Callable[[str], None] | None = getattr(model, "set_attn_implementation", None)
    if set_attn is not None:
        set_attn("eager")
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


def optimize(src: Path, dst: Path, *, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Write ``src`` with BERT fusions (Attention, SkipLayerNormalization, BiasGelu, EmbedLayerNormalization)
    at ``dst`` (atomically); the fused operator counts. RuntimeError if no attention was fused."""
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(src), model_type="bert", num_heads=num_heads, hidden_size=hidden_size, opt_level=0)
    stats = {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v}
    if not stats.get("Attention"):
        raise RuntimeError(f"no attention fused ({stats})")
    fd, tmp = tempfile.mkstemp(dir=dst.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        fused.save_model_to_file(tmp)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return stats


def session_for(
    model: torch.nn.Module,
    forward: PooledForward,
    *,
    encoder_id: str,
    pooling: str,
    threads: int,
    cache_dir: Path,
    fuse: bool = False,
) -> Any:
    """An InferenceSession for ``model`` and its pooling ``forward`` (exported, and with ``fuse`` fused,
    on first use), one per graph and thread count per process."""
    import onnxruntime as ort

    digest = hashlib.sha256(
        f"{encoder_id}|{pooling}|opset{OPSET}|torch{torch.__version__}|eager".encode()
    ).hexdigest()[:16]
    path = cache_dir / f"encoder-{digest}.onnx"
    key = (f"{path}|fuse={fuse}", threads)
    with _lock:
        if key in _sessions:
            return _sessions[key]
        if not path.is_file():
            log.info("exporting the encoder to %s (once)", path)
            export(model, forward, path)
        if fuse:
            config = getattr(model, "config")  # noqa: B009
            fused = path.with_name(f"{path.stem}.fused-ort{ort.__version__}.onnx")
            try:
                if not fused.is_file():
                    log.info("fusing the encoder graph into %s (once)", fused)
                    optimize(path, fused, num_heads=config.num_attention_heads, hidden_size=config.hidden_size)
                path = fused
            except Exception as exc:  # noqa: BLE001 - the unfused graph gives the same vectors
                log.warning("ONNX Runtime graph fusion failed for %s, running the unfused graph: %s", path, exc)
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
