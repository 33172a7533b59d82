"""The temperature rule on unseen data: test ECE/NLL at the in-sample fit and at the rule's choice.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.calibration_rule [--cache var/bench-cache.sqlite]
        [--labels 500] [--test 1500] [--seeds 0 1 2 3 4]

Per seed: ``labels + test`` rt-snippets documents drawn at random (``default_rng(1000 + seed)``), the
first ``labels`` train (``train_embeddings``, default settings, ``TrainConfig(seed)``), the rest are
scored. ``candidate`` is the temperature fitted on the out-of-fold predictions (what was applied before
the rule); ``chosen`` is what ``temperature_choose`` applies (the candidate only when it lowers the
cross-fitted NLL). Prints one JSON object per seed and a mean line; ``test_optimal_T`` is the
temperature fitted on the test documents themselves (for reading, never used).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from modelsvc.calibration import _nll, ece_mce, ece_noise_floor, fit_temperature, tempered_samples
from modelsvc.config import TrainConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.fitting import train_embeddings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="var/bench-cache.sqlite")
    parser.add_argument("--labels", type=int, default=500)
    parser.add_argument("--test", type=int, default=1500)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    args = parser.parse_args()
    texts, labels = load_builtin("rt-snippets")
    names = sorted(set(labels))
    y_all = np.array([names.index(label) for label in labels])
    encoder = TextEncoder()
    cache = EmbeddingCache(args.cache)
    rows = []
    for seed in args.seeds:
        idx = np.random.default_rng(1000 + seed).permutation(len(texts))[: args.labels + args.test]
        emb = encoder.encode([texts[i] for i in idx], cache=cache)
        train_idx, n = idx[: args.labels], args.labels
        result = train_embeddings(emb[:n], [labels[i] for i in train_idx], label_names=names,
                                  encoder_id=encoder.encoder_id, train_config=TrainConfig(seed=seed))
        choice = result.calibration["temperature_choice"]
        logits = result.classifier.sample_logits(emb[n:])  # (T, K, C), uncalibrated
        y = y_all[idx[n:]]
        row: dict[str, object] = {"seed": seed, "chosen": choice["chosen"]}
        for name, t in (("candidate", choice["candidate"]), ("rule", choice["temperature"])):
            probs = tempered_samples(logits, t).mean(1)
            row[f"T_{name}"] = round(t, 3)
            row[f"test_ece_{name}"] = round(ece_mce(probs, y)[0], 4)
            row[f"test_nll_{name}"] = round(_nll(probs, y), 4)
        row["oof_nll_baseline"] = round(choice["nll_baseline"], 4)
        row["oof_nll_cross_fitted"] = round(choice["nll_cross_fitted"], 4)
        row["test_optimal_T"] = round(fit_temperature(logits, y), 3)
        row["test_ece_noise_floor"] = round(ece_noise_floor(tempered_samples(logits, choice["temperature"]).mean(1)), 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = ("test_ece_candidate", "test_ece_rule", "test_nll_candidate", "test_nll_rule")
    print(json.dumps({"mean": {k: round(float(np.mean([r[k] for r in rows])), 4) for k in keys},
                      "seeds": len(rows)}))


if __name__ == "__main__":
    main()
