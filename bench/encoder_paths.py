"""Encoding paths side by side: each variant against the path it would replace, in one process.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.encoder_paths [--docs 500] [--rounds 3]

The adoption rule (docs/MODELSVC.md, "Encoding speed from text"): a variant is adopted when every
vector stays at cosine >= 0.9999 to the torch fp32 encoder, its predicted labels are 100 % those of the
fp32 vectors, and the median of its encode time against its baseline's, over ``--rounds`` interleaved
rounds on the same documents, is >= 1.05x. Documents: rt-snippets, permutation seed 0 (the documents of
``bench.scoring --quick``); the head is trained with ``TrainConfig(seed=0)`` on 1,000 other documents.

Variants: ``budget`` is the old batching (cut the length-sorted windows every ``batch_tokens`` padded
tokens), ``grouped`` is ``length_batches`` (cut where padding plus a per-call overhead is least);
``onnx`` is the unfused exported graph, ``onnx-fused`` the graph after ONNX Runtime's BERT fusions.
Prints one JSON object per variant, then the load average.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from bench.scoring import cpu_model, emit, padding
from modelsvc import onnx_backend
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import BATCH_OVERHEAD_TOKENS, TextEncoder, budget_batches, length_batches, pooled_forward
from modelsvc.inference import score_embeddings
from modelsvc.training import train_embeddings


def variant(config: ModelConfig, backend: str, *, batching: str, fuse: bool = False) -> TextEncoder:
    encoder = TextEncoder(config, backend=backend)
    overhead = int(batching.split("-")[1]) if batching.startswith("grouped-") else BATCH_OVERHEAD_TOKENS
    if batching == "budget":
        encoder._batches = lambda lengths: budget_batches(lengths, config.batch_tokens)  # type: ignore[method-assign]
    else:  # grouped, or grouped-<overhead>: length_batches with that per-call overhead
        encoder._batches = lambda lengths: iter(  # type: ignore[method-assign]
            length_batches(lengths, config.batch_tokens, overhead)
        )
    if encoder.backend == "onnx":
        pooling = config.pooling
        session = onnx_backend.session_for(
            encoder.model,
            lambda model, ids, mask: pooled_forward(model, mask, pooling, input_ids=ids),
            encoder_id=encoder.encoder_id,
            pooling=pooling,
            threads=config.num_threads or torch.get_num_threads(),
            cache_dir=onnx_backend.default_cache_dir(),
            fuse=fuse,
        )
        encoder._onnx_session = lambda threads: session  # type: ignore[method-assign]
    return encoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-tokens", type=int, default=ModelConfig.batch_tokens)
    parser.add_argument("--only", nargs="*", help="variant names to run (default: all)")
    parser.add_argument("--overheads", type=int, nargs="*", default=[],
                        help="also run torch-bf16/grouped-N and onnx/grouped-N for these per-call overheads")
    args = parser.parse_args()
    emit(machine=cpu_model(), cores=os.cpu_count(), torch=torch.__version__, threads=torch.get_num_threads(),
         load_start=os.getloadavg())

    texts_all, labels_all = load_builtin("rt-snippets")
    order = np.random.default_rng(0).permutation(len(texts_all))
    texts = [texts_all[i] for i in order[: args.docs]]
    train_idx = order[args.docs : args.docs + 1000]
    base = ModelConfig(batch_tokens=args.batch_tokens)
    fp32, bf16 = dataclasses.replace(base, precision="fp32"), dataclasses.replace(base, precision="bf16")

    # name -> (encoder, the name of its baseline); the reference is the old torch fp32 path
    plan: dict[str, tuple[Callable[[], TextEncoder], str]] = {
        "torch-fp32/budget": (lambda: variant(fp32, "torch", batching="budget"), "torch-fp32/budget"),
        "torch-fp32/grouped": (lambda: variant(fp32, "torch", batching="grouped"), "torch-fp32/budget"),
        "torch-bf16/budget": (lambda: variant(bf16, "torch", batching="budget"), "torch-bf16/budget"),
        "torch-bf16/grouped": (lambda: variant(bf16, "torch", batching="grouped"), "torch-bf16/budget"),
        "onnx/budget": (lambda: variant(fp32, "onnx", batching="budget"), "onnx/budget"),
        "onnx/grouped": (lambda: variant(fp32, "onnx", batching="grouped"), "onnx/budget"),
        "onnx-fused/budget": (lambda: variant(fp32, "onnx", batching="budget", fuse=True), "onnx/budget"),
        "onnx-fused/grouped": (lambda: variant(fp32, "onnx", batching="grouped", fuse=True), "onnx/grouped"),
    }
    for n in args.overheads:
        plan[f"torch-bf16/grouped-{n}"] = (
            lambda n=n: variant(bf16, "torch", batching=f"grouped-{n}"), "torch-bf16/budget")
        plan[f"onnx/grouped-{n}"] = (
            lambda n=n: variant(fp32, "onnx", batching=f"grouped-{n}"), "onnx/budget")
    names = [n for n in plan if not args.only or n in args.only]
    names = list(dict.fromkeys(names + [plan[n][1] for n in names]))
    encoders = {name: plan[name][0]() for name in names}
    for enc in encoders.values():
        enc.encode(texts[:64])  # warm up: weights, export and fusion, first-call allocations

    seconds: dict[str, list[float]] = {name: [] for name in names}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            vectors[name] = enc.encode(texts)
            seconds[name].append(time.perf_counter() - t0)

    if "torch-fp32/budget" not in encoders:  # the reference, encoded once untimed
        encoders["torch-fp32/budget"] = plan["torch-fp32/budget"][0]()
        vectors["torch-fp32/budget"] = encoders["torch-fp32/budget"].encode(texts)
    reference = vectors["torch-fp32/budget"]
    train_emb = encoders["torch-fp32/budget"].encode([texts_all[i] for i in train_idx])
    clf = train_embeddings(
        train_emb, [labels_all[i] for i in train_idx], label_names=["fresh", "rotten"],
        encoder_id=encoders["torch-fp32/budget"].encoder_id, model_config=fp32, train_config=TrainConfig(seed=0),
    ).classifier
    predicted = score_embeddings(clf, reference).predicted
    for name in names:
        vec, base_name = vectors[name], plan[name][1]
        cos = (vec * reference).sum(1) / (np.linalg.norm(vec, axis=1) * np.linalg.norm(reference, axis=1))
        ratios = np.asarray(seconds[base_name]) / np.asarray(seconds[name])  # round by round
        emit(
            variant=name, backend=encoders[name].backend, baseline=base_name, docs=args.docs,
            docs_per_s_median=round(args.docs / float(np.median(seconds[name])), 1),
            speedup_median=round(float(np.median(ratios)), 3), speedups=[round(float(r), 3) for r in ratios],
            padding=round(padding(encoders[name], texts), 3),
            cosine_vs_fp32_min=float(cos.min()),
            same_predictions=float((score_embeddings(clf, vec).predicted == predicted).mean()),
        )
    if "onnx/grouped" in seconds and "torch-bf16/budget" in seconds:  # the default per CPU kind (rule 3)
        ratios = np.asarray(seconds["torch-bf16/budget"]) / np.asarray(seconds["onnx/grouped"])
        emit(compare="onnx/grouped vs torch-bf16/budget", speedup_median=round(float(np.median(ratios)), 3),
             speedups=[round(float(r), 3) for r in ratios])
    emit(load_end=os.getloadavg())


if __name__ == "__main__":
    main()
