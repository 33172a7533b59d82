"""Is a temperature fitted on out-of-fold samples too high for the deployed ensemble? (issue #20)

    HF_HUB_OFFLINE=1 nice .venv/bin/python -m bench.ensemble_temperature [--cache var/bench-cache.sqlite]
        [--data trec rt-snippets] [--seeds 0 1 2] [--labels 300 500 1000]

The replays of #20 (docs/REPLAY.md, "A sharper draw") found trec's deployed model under-confident on the
test split (test-optimal temperature 0.75-0.95) while every fit stayed near 1. The hypothesis: the
temperature is fitted on out-of-fold samples, each from its own fold's ``n_members`` heads, but applied
to the deployed model, which averages all ``K * n_members`` heads, and an average of more heads is softer.

Per data set, seed and label count: 2,000 test documents drawn at random (``default_rng(seed)``, never
labeled), the first ``labels`` of the rest in the same seeded order as random labels (no strategy, so no
selection bias: what is left is the ensemble's own), the service's head cross-fitted on the cached MiniLM
vectors (``modelsvc.fitting.train_embeddings``, default settings). Printed, each a temperature:

- ``fitted``: what the training run deploys (cross-fitted choice on the out-of-fold samples);
- ``oof_optimal``: the NLL-optimal temperature of the out-of-fold samples themselves;
- ``fold_test_optimal``: the test-optimal temperature of one fold's heads alone (geometric mean over folds):
  what ``oof_optimal`` estimates;
- ``deployed_test_optimal``: the test-optimal temperature of the deployed ensemble: what the fit should find;
- ``entropy_matched``: a label-free transfer: the temperature at which the deployed ensemble's mean
  predictive entropy over the unlabeled pool equals the fold heads' at ``fitted`` (each fold's heads on
  the same pool documents).

and the test ECE of the deployed model at ``fitted``, at ``entropy_matched`` and at its test optimum.
No database, no strategy: the models and the split only.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
from scipy.optimize import brentq

from bench._common import machine
from bench.noise_ranking import interval, labeled_data
from modelsvc.calibration import ece_mce, fit_temperature, tempered_samples
from modelsvc.config import TrainConfig
from modelsvc.crossfit import member_folds
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.fitting import train_embeddings
from modelsvc.uncertainty import predictive_entropy

TEST_SIZE = 2000
#: Unlabeled pool documents the label-free transfer reads (the first of the rest, after the labels).
POOL_SAMPLE = 2000


def mean_entropy(sample_logits: np.ndarray, temperature: float) -> float:
    return float(predictive_entropy(tempered_samples(sample_logits, temperature)).mean())


def fold_samples(sample_logits: np.ndarray, k: int, per_fold: int) -> list[np.ndarray]:
    """Per fold, the samples of that fold's members only: K arrays (N, S / K, C)."""
    total = k * per_fold
    owner = member_folds(k, per_fold)[np.arange(sample_logits.shape[1]) % total]
    return [sample_logits[:, owner == f] for f in range(k)]


def one_run(
    texts: list[str],
    y_all: np.ndarray,
    names: list[str],
    seed: int,
    labels: int,
    encoder: TextEncoder,
    cache: EmbeddingCache,
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    test, rest = order[:TEST_SIZE], order[TEST_SIZE:]
    idx, pool = rest[:labels], rest[labels : labels + POOL_SAMPLE]
    emb = encoder.encode([texts[i] for i in idx], cache=cache)
    test_emb = encoder.encode([texts[i] for i in test], cache=cache)
    pool_emb = encoder.encode([texts[i] for i in pool], cache=cache)
    y, y_test = y_all[idx], y_all[test]
    result = train_embeddings(
        emb,
        [names[c] for c in y],
        label_names=names,
        encoder_id=encoder.encoder_id,
        train_config=TrainConfig(seed=seed),
    )
    clf = result.classifier
    k, per_fold = int(result.calibration["folds"]), clf.head.n_members // int(result.calibration["folds"])
    fitted = float(result.calibration["temperature"])
    assert result.oof_logits is not None
    oof_optimal = fit_temperature(result.oof_logits, y)
    deployed_test = clf.sample_logits(test_emb)  # (N, S, C): the deployed samples, all members
    draws = result.oof_logits.shape[1] // per_fold
    per_fold_test = fold_samples(clf.sample_logits(test_emb, k=clf.head.n_members * draws), k, per_fold)
    fold_test_optimal = math.exp(float(np.mean([math.log(fit_temperature(s, y_test)) for s in per_fold_test])))
    deployed_test_optimal = fit_temperature(deployed_test, y_test)
    # Label-free: match the deployed ensemble's mean entropy on the pool to the fold heads' at ``fitted``.
    pool_folds = fold_samples(clf.sample_logits(pool_emb, k=clf.head.n_members * draws), k, per_fold)
    target = float(np.mean([mean_entropy(s, fitted) for s in pool_folds]))
    pool_deployed = clf.sample_logits(pool_emb)
    try:
        matched = math.exp(brentq(lambda lt: mean_entropy(pool_deployed, math.exp(lt)) - target, -3.0, 3.0))
    except ValueError:  # no root in [e^-3, e^3]: keep the fit
        matched = fitted

    def ece(t: float) -> float:
        return float(ece_mce(tempered_samples(deployed_test, t).mean(1), y_test)[0])

    return {
        "fitted": fitted,
        "oof_optimal": oof_optimal,
        "fold_test_optimal": fold_test_optimal,
        "deployed_test_optimal": deployed_test_optimal,
        "entropy_matched": matched,
        "ece_fitted": ece(fitted),
        "ece_entropy_matched": ece(matched),
        "ece_test_optimal": ece(deployed_test_optimal),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="var/bench-cache.sqlite")
    parser.add_argument("--data", nargs="+", default=["trec", "rt-snippets"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels", type=int, nargs="+", default=[300, 500, 1000])
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}), flush=True)
    encoder = TextEncoder()
    cache = EmbeddingCache(args.cache)
    keys = [
        "fitted",
        "oof_optimal",
        "fold_test_optimal",
        "deployed_test_optimal",
        "entropy_matched",
        "ece_fitted",
        "ece_entropy_matched",
        "ece_test_optimal",
    ]
    print("| data | labels | " + " | ".join(keys) + " |\n|" + "---|" * (len(keys) + 2))
    for data in args.data:
        texts, names, y_all = labeled_data(data)
        for labels in args.labels:
            runs = [one_run(texts, y_all, names, seed, labels, encoder, cache) for seed in args.seeds]
            for seed, run in zip(args.seeds, runs, strict=True):
                print(json.dumps({"data": data, "labels": labels, "seed": seed} | run), flush=True)
            cells = []
            for key in keys:
                mean, half = interval([r[key] for r in runs])
                cells.append(f"{mean:.3f} +- {half:.3f}")
            print(f"| {data} | {labels} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
