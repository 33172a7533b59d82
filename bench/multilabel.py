"""Multi-label quality on ``disaster``: the sigmoid head vs one-vs-rest TF-IDF + logistic regression.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.multilabel [--cache var/bench-cache.sqlite]
        [--labels 100 200 500 1000] [--pool 2000] [--test 1000] [--seeds 0] [--no-head]

The pool is the first ``--pool`` messages of the file's ``train`` split, the test set the first
``--test`` of its ``test`` split (35 labels, ``modelsvc.datasets.load_multilabel``); with
``--replay-seed S`` they are instead the replay's own pool and test split of seed S
(``manage.py replay --data disaster --pool-size P --test-size T``: exact repeats dropped, then
``modelsvc.datasets.random_split``), so the baseline reads on the replay's documents. Per (labels, seed)
``labels`` pool messages are drawn at random (``default_rng(seed)``, the same draw for both models):

- ``tfidf_lr``: TF-IDF (1-2 grams) + one logistic regression per label (labels with one outcome in the
  draw predict that outcome), 0.5 thresholds: the baseline the replay's curves are read against;
- ``head``: the service's multi-label head on the packaged encoder (``train_multilabel_embeddings``,
  default settings, per-label temperatures and out-of-fold thresholds).

Prints one JSON object per line (the machine first); micro / macro F1 with their bootstrap intervals,
subset accuracy, Hamming loss and mean per-label ECE, all from ``modelsvc.multilabel.evaluate_multilabel``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.datasets import load_multilabel, random_split
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.inference import score_multilabel_embeddings
from modelsvc.multilabel import evaluate_multilabel
from modelsvc.multilabel_fit import train_multilabel_embeddings

KEYS = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "ece_mean")


def tfidf_lr_probs(train_x: list[str], train_y: np.ndarray, test_x: list[str]) -> np.ndarray:
    """(N_test, C) one-vs-rest probabilities; a label with one outcome in training predicts it always."""
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    xtr, xte = vec.fit_transform(train_x), vec.transform(test_x)
    out = np.zeros((len(test_x), train_y.shape[1]))
    for c in range(train_y.shape[1]):
        if len(np.unique(train_y[:, c])) < 2:
            out[:, c] = train_y[0, c]
            continue
        lr = LogisticRegression(max_iter=2000, C=10.0)
        out[:, c] = lr.fit(xtr, train_y[:, c]).predict_proba(xte)[:, 1]
    return out


def summary(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {k: round(float(metrics[k]), 4) for k in KEYS}
    out["micro_f1_ci"] = [round(v, 4) for v in metrics["intervals"]["micro_f1"]]
    out["macro_f1_ci"] = [round(v, 4) for v in metrics["intervals"]["macro_f1"]]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="var/bench-cache.sqlite")
    parser.add_argument("--labels", type=int, nargs="+", default=[100, 200, 500, 1000])
    parser.add_argument("--pool", type=int, default=2000)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--no-head", action="store_true", help="the TF-IDF baseline only (no encoder)")
    parser.add_argument("--replay-seed", type=int, help="use the replay's pool and test split of this seed")
    args = parser.parse_args()
    load = os.getloadavg()
    print(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "loadavg": [round(v, 1) for v in load],
            }
        )
    )
    data = load_multilabel("disaster")
    texts, y, names = data.texts, data.targets, data.label_names
    if args.replay_seed is None:
        pool = [i for i, s in enumerate(data.split) if s == "train"][: args.pool]
        test = [i for i, s in enumerate(data.split) if s == "test"][: args.test]
    else:  # the replay's documents: first of exact repeats kept (``labeling.replay.loop.dedupe``), then its split
        first: dict[str, int] = {}
        for i, t in enumerate(texts):
            first.setdefault(t, i)
        keep = sorted(first.values())
        texts, y = [texts[i] for i in keep], y[keep]
        pool_idx, test_idx = random_split(len(texts), seed=args.replay_seed, test_size=args.test, pool_size=args.pool)
        pool, test = pool_idx.tolist(), test_idx.tolist()
    y_test = y[test]
    emb_pool = emb_test = None
    encoder_id = ""
    if not args.no_head:
        encoder = TextEncoder(ModelConfig())
        cache = EmbeddingCache(args.cache)
        t0 = time.perf_counter()
        emb_pool = encoder.encode([texts[i] for i in pool], cache=cache)
        emb_test = encoder.encode([texts[i] for i in test], cache=cache)
        encoder_id = encoder.encoder_id
        print(json.dumps({"encoded": len(pool) + len(test), "seconds": round(time.perf_counter() - t0, 1)}))
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(pool))
        for n in args.labels:
            draw = order[:n]
            train_rows = [pool[i] for i in draw]
            row: dict[str, Any] = {"labels": n, "seed": seed, "test": len(test)}
            probs = tfidf_lr_probs([texts[i] for i in train_rows], y[train_rows], [texts[i] for i in test])
            row["tfidf_lr"] = summary(evaluate_multilabel(probs, probs, y_test, None, names))
            if emb_pool is not None and emb_test is not None:
                t0 = time.perf_counter()
                result = train_multilabel_embeddings(
                    emb_pool[draw],
                    y[train_rows],
                    label_names=names,
                    encoder_id=encoder_id,
                    train_config=TrainConfig(seed=seed),
                )
                clf = result.classifier
                scored = score_multilabel_embeddings(clf, emb_test)
                row["head"] = summary(
                    evaluate_multilabel(scored.probs_uncalibrated, scored.probs, y_test, clf.thresholds, names)
                )
                at_half = evaluate_multilabel(scored.probs, scored.probs, y_test, None, names)
                row["head_at_0.5"] = {k: round(float(at_half[k]), 4) for k in ("micro_f1", "macro_f1")}
                row["head_fit_s"] = round(time.perf_counter() - t0, 1)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
