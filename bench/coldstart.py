"""Cold start benchmark: accuracy at 50 / 100 / 200 / 300 labels when the first 50 come from the
pre-model order (seeded random, TypiClust, zero-shot margin), then batches of 25 by margin.

    HF_HUB_OFFLINE=1 nice .venv/bin/python -m bench.coldstart [--cache var/bench-cache.sqlite]
        [--seeds 0 1 2] [--datasets trec rt-snippets]

Real data (trec: all 5,381 questions; rt-snippets: a seeded 6,000 of 12,808 snippets), embedded by the
packaged encoder through an embedding cache (the service's default pooling). Per seed: 2,000 test
documents never queried, the rest is the pool. The first model's 50 labels come from the method; the
order ranks 100 (the service's budget, ``2 x max(retrain_after, 2 x labels)``) and the first 50 are
taken, as the queue serves them. After that every method continues alike: logistic regression on the
embeddings, the 25 smallest-margin pool documents per round (a proxy for the service's post-model
loop, which cold start does not change). Prints one JSON object per (dataset, method, seed) and a
summary with the mean per checkpoint.
"""

from __future__ import annotations

import argparse
import json
import random
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from modelsvc.coldstart import label_prompt, typiclust_order, zero_shot_order, zero_shot_probabilities
from modelsvc.config import ModelConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import EmbeddingCache, TextEncoder

FIRST = 50
BUDGET = 2 * FIRST
BATCH = 25
CHECKPOINTS = (50, 100, 200, 300)
TEST = 2000
SAMPLE = {"trec": None, "rt-snippets": 6000}
# What a user would type as label descriptions (name: display text); nothing here was tuned on results.
DESCRIPTIONS = {
    "trec": {
        "ABBR": ("abbreviation", "asks what an abbreviation or acronym stands for"),
        "DESC": ("description", "asks for a definition, description, manner or reason"),
        "ENTY": ("entity", "asks for a thing: an animal, product, color, substance, event or other entity"),
        "HUM": ("human", "asks for a person or a group of people"),
        "LOC": ("location", "asks for a place: a city, country, mountain or other location"),
        "NUM": ("numeric", "asks for a number, date, count, size, price or other numeric value"),
    },
    "rt-snippets": {
        "fresh": ("positive review", "the critic liked the movie"),
        "rotten": ("negative review", "the critic disliked the movie"),
    },
}


def load(name: str, cache: EmbeddingCache, encoder: TextEncoder) -> tuple[list[str], np.ndarray, np.ndarray]:
    texts, labels = load_builtin(name)
    idx = list(range(len(texts)))
    if SAMPLE[name] is not None:
        random.Random(0).shuffle(idx)
        idx = sorted(idx[: SAMPLE[name]])
    texts = [texts[i] for i in idx]
    names = sorted(set(labels))
    y = np.array([names.index(labels[i]) for i in idx])
    return names, encoder.encode(texts, cache=cache), y


def fit_predict(x: np.ndarray, y: np.ndarray, train: list[int], pool: np.ndarray, test: np.ndarray, classes: int):
    """(pool probabilities (P, C), test predictions) of a logistic regression on ``train``."""
    present = np.unique(y[train])
    if len(present) < 2:  # one class seen: it is every prediction, the pool is unranked
        return np.full((len(pool), classes), 1.0 / classes), np.full(len(test), present[0])
    model = LogisticRegression(max_iter=2000).fit(x[train], y[train])
    full = np.zeros((len(pool), classes))
    full[:, model.classes_] = model.predict_proba(x[pool])
    return full, model.predict(x[test])


def run(name: str, method: str, seed: int, names: list[str], x: np.ndarray, y: np.ndarray, zs: np.ndarray) -> dict:
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    test, pool = perm[:TEST], np.sort(perm[TEST:])
    if method == "random":
        first = [int(i) for i in pool[rng.permutation(len(pool))[:FIRST]]]
    elif method == "typiclust":
        first = [int(pool[i]) for i in typiclust_order(x[pool], budget=BUDGET, seed=seed)[:FIRST]]
    else:
        first = [int(pool[i]) for i in zero_shot_order(zs[pool], budget=BUDGET)[:FIRST]]
    labeled = list(first)
    out: dict[str, Any] = {"dataset": name, "method": method, "seed": seed, "accuracy": {}}
    out["classes_in_first_50"] = int(len(np.unique(y[first])))
    while True:
        rest = np.setdiff1d(pool, labeled)
        probs, pred = fit_predict(x, y, labeled, rest, test, len(names))
        if len(labeled) in CHECKPOINTS:
            out["accuracy"][len(labeled)] = round(float((pred == y[test]).mean()), 4)
        if len(labeled) >= CHECKPOINTS[-1]:
            return out
        top2 = np.sort(probs, axis=1)[:, -2:]
        labeled += [int(i) for i in rest[np.argsort(top2[:, 1] - top2[:, 0], kind="stable")[:BATCH]]]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cache", default="var/bench-cache.sqlite")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=["trec", "rt-snippets"])
    parser.add_argument("--methods", nargs="+", default=["random", "typiclust", "zero_shot"])
    args = parser.parse_args()
    encoder = TextEncoder(ModelConfig())
    cache = EmbeddingCache(args.cache)
    summary: dict[str, dict[str, Any]] = {}
    for name in args.datasets:
        names, x, y = load(name, cache, encoder)
        prompts = [label_prompt(n, *DESCRIPTIONS[name][n]) for n in names]
        zs = zero_shot_probabilities(x, encoder.encode(prompts, cache=cache))
        zero_shot_accuracy = float((zs.argmax(1) == y).mean())
        print(json.dumps({"dataset": name, "zero_shot_accuracy_whole_set": round(zero_shot_accuracy, 4)}), flush=True)
        for method in args.methods:
            rows = [run(name, method, seed, names, x, y, zs) for seed in args.seeds]
            for row in rows:
                print(json.dumps(row), flush=True)
            summary.setdefault(name, {})[method] = {
                n: round(float(np.mean([r["accuracy"][n] for r in rows])), 4) for n in CHECKPOINTS
            }
    print(json.dumps({"summary": summary, "seeds": args.seeds}), flush=True)


if __name__ == "__main__":
    main()
