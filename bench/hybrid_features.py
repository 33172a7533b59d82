"""Hybrid features against the embedding alone, at the modelsvc level; one JSON line per run, then a summary.

    HF_HUB_OFFLINE=1 nice .venv/bin/python -m bench.hybrid_features [--seeds 0 1] [--labels 250 500 1000]
        [--dims 256] [--datasets trec rt-snippets] [--cache var/bench-cache.sqlite] [--no-embedding]

Per data set and seed: 2,000 test documents drawn at random (never labeled, never fitted on by the
head), the rest is the pool, taken in a seeded random order; the first n pool documents are the labels.
``embedding`` trains the head on the cached frozen vectors of those n; ``hybrid-R`` fits the TF-IDF +
SVD block on the whole pool (unlabeled, as the service does) and trains the same head on the vectors
beside it. Test accuracy and calibrated ECE are reported per run and as means over seeds with a
t-interval; ``train_s`` is the fast tier's training time (head fit + calibration, plus the TF-IDF / SVD
fit for hybrid). The rule that decides the default is in docs/MODELSVC.md "Hybrid sparse + dense features".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections import defaultdict
from typing import Any

import numpy as np
from scipy import stats

from modelsvc.calibration import evaluate_predictions
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.features import fit_hybrid
from modelsvc.fitting import encode_labels, train_embeddings
from modelsvc.inference import score_embeddings

TEST_SIZE = 2000


def random_split(n_texts: int, *, seed: int, n_labels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(test, pool, labeled) indices: TEST_SIZE seeded random test documents, the rest the pool in that random
    order, its first ``n_labels`` the labels."""
    order = np.random.default_rng(seed).permutation(n_texts)
    test, pool = order[:TEST_SIZE], order[TEST_SIZE:]
    return test, pool, pool[:n_labels]


def run_one(
    texts: list[str],
    y: np.ndarray,
    names: list[str],
    emb: np.ndarray,
    encoder_id: str,
    *,
    seed: int,
    n_labels: int,
    dims: int | None,
    pool_features: dict[int, Any],
) -> dict[str, Any]:
    test, pool, labeled = random_split(len(texts), seed=seed, n_labels=n_labels)
    t0 = time.perf_counter()
    if dims is None:
        x_train, x_test = emb[labeled], emb[test]
        fit_features_s = 0.0
    else:
        if dims not in pool_features:  # fitted once per (data set, seed): the pool does not change with n
            t = time.perf_counter()
            pool_features[dims] = (fit_hybrid([texts[i] for i in pool], dims=dims, seed=seed), time.perf_counter() - t)
        features, fit_features_s = pool_features[dims]
        t0 = time.perf_counter()
        x_train = features.augment([texts[i] for i in labeled], emb[labeled])
        x_test = features.augment([texts[i] for i in test], emb[test])
    t1 = time.perf_counter()
    model_config = ModelConfig() if dims is None else ModelConfig(features="hybrid", sparse_dims=dims)
    result = train_embeddings(
        x_train,
        y[labeled],
        label_names=names,
        encoder_id=encoder_id,
        model_config=model_config,
        train_config=TrainConfig(seed=seed),
    )
    head_s = time.perf_counter() - t1
    res = score_embeddings(result.classifier, x_test)
    m = evaluate_predictions(res.probs_uncalibrated, res.probs, y[test], res.uncertainty())
    return {
        "features": "embedding" if dims is None else f"hybrid-{dims}",
        "seed": seed,
        "labels": n_labels,
        "accuracy": round(float(m["accuracy"]), 4),
        "ece": round(float(m["ece"]), 4),
        "nll": round(float(m["nll"]), 4),
        "in_dim": int(x_train.shape[1]),
        "train_s": round(head_s + fit_features_s + (t1 - t0), 2),
        "head_s": round(head_s, 2),
        "fit_features_s": round(fit_features_s, 2),
        "augment_s": round(t1 - t0, 2),
    }


def mean_interval(values: list[float]) -> dict[str, float]:
    """Mean and the 95 % t-interval half-width over seeds (nan with one seed)."""
    a = np.asarray(values, dtype=float)
    half = float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else float("nan")
    return {"mean": round(float(a.mean()), 4), "pm": round(half, 4)}


def encoded_builtin(
    name: str, encoder: TextEncoder, cache: EmbeddingCache
) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """A built-in data set as (texts, label indices (N,), sorted label names, frozen vectors (N, H) via the cache)."""
    texts, labels = load_builtin(name)
    names = sorted(set(labels))
    return texts, encode_labels(labels, names), names, encoder.encode(texts, cache=cache)


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (data set, labels, features): the seeds, and mean accuracy, ECE and training time with intervals."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["labels"], row["features"])].append(row)
    return [
        {
            "dataset": d,
            "labels": n,
            "features": f,
            "seeds": [r["seed"] for r in rs],
            "accuracy": mean_interval([r["accuracy"] for r in rs]),
            "ece": mean_interval([r["ece"] for r in rs]),
            "train_s": mean_interval([r["train_s"] for r in rs]),
        }
        for (d, n, f), rs in sorted(groups.items())
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["trec", "rt-snippets"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--labels", nargs="+", type=int, default=[250, 500, 1000])
    parser.add_argument("--dims", nargs="+", type=int, default=[256])
    parser.add_argument("--cache", default="var/bench-cache.sqlite")
    parser.add_argument("--no-embedding", action="store_true", help="hybrid runs only (the baseline rows exist)")
    args = parser.parse_args()
    config = ModelConfig()
    encoder = TextEncoder(config)
    cache = EmbeddingCache(args.cache)
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        texts, y, names, emb = encoded_builtin(name, encoder, cache)
        for seed in args.seeds:
            pool_features: dict[int, Any] = {}
            for n in args.labels:
                for dims in [*([] if args.no_embedding else [None]), *args.dims]:
                    row = run_one(
                        texts,
                        y,
                        names,
                        emb,
                        encoder.encoder_id,
                        seed=seed,
                        n_labels=n,
                        dims=dims,
                        pool_features=pool_features,
                    )
                    row["dataset"] = name
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(json.dumps({"summary": summarize(rows), "model_config": dataclasses.asdict(config)}, indent=1))


if __name__ == "__main__":
    main()
