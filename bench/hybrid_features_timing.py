"""Fast-tier training time at 1,000 labels, ``embedding`` against ``hybrid``; one JSON line per data set.

    HF_HUB_OFFLINE=1 nice .venv/bin/python -m bench.hybrid_features_timing [--cache var/bench-cache.sqlite]

Seed 0, the split of ``bench.hybrid_features`` (test 2,000, the rest the pool, the first 1,000 of its
seeded order labeled). In one process, back to back: the TF-IDF + SVD fit on the pool, building the
hybrid inputs of the labels, the head fitted on the embeddings, the head fitted on the hybrid inputs.
Reports the load average beside the seconds: on a shared host they measure the load as much as the code.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.features import fit_hybrid
from modelsvc.fitting import encode_labels, train_embeddings

TEST_SIZE, LABELS = 2000, 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="var/bench-cache.sqlite")
    parser.add_argument("--datasets", nargs="+", default=["trec", "rt-snippets"])
    args = parser.parse_args()
    encoder = TextEncoder(ModelConfig())
    cache = EmbeddingCache(args.cache)
    for name in args.datasets:
        texts, labels = load_builtin(name)
        names = sorted(set(labels))
        y = encode_labels(labels, names)
        emb = encoder.encode(texts, cache=cache)
        order = np.random.default_rng(0).permutation(len(texts))
        pool = order[TEST_SIZE:]
        labeled = pool[:LABELS]
        t = time.perf_counter()
        features = fit_hybrid([texts[i] for i in pool], dims=256, seed=0)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        x = features.augment([texts[i] for i in labeled], emb[labeled])
        inputs_s = time.perf_counter() - t
        seconds = {}
        for variant, inputs, config in (
            ("embedding", emb[labeled], ModelConfig()),
            ("hybrid", x, ModelConfig(features="hybrid")),
        ):
            t = time.perf_counter()
            train_embeddings(
                inputs,
                y[labeled],
                label_names=names,
                encoder_id="bench",
                model_config=config,
                train_config=TrainConfig(seed=0),
            )
            seconds[variant] = round(time.perf_counter() - t, 2)
        print(
            json.dumps(
                {
                    "dataset": name,
                    "pool": len(pool),
                    "fit_features_s": round(fit_s, 2),
                    "inputs_s": round(inputs_s, 2),
                    "head_embedding_s": seconds["embedding"],
                    "head_hybrid_s": seconds["hybrid"],
                    "load_average": [round(v, 1) for v in os.getloadavg()],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
