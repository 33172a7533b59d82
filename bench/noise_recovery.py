"""How much of the accuracy lost to flipped labels a review of the flagged ones buys back (issue #18).

    HF_HUB_OFFLINE=1 nice .venv/bin/python -m bench.noise_recovery [--cache var/bench-cache.sqlite]
        [--data rt-snippets trec] [--seeds 0 1 2] [--labels 1000] [--flip 0.15] [--share 0.1] [--rounds 1]

Per data set and seed: 2,000 test documents drawn at random (``default_rng(seed)``; never labeled),
the first ``labels`` of the rest in the same seeded order, ``round(flip * labels)`` of them moved to a
uniformly chosen other class by the same generator (``bench.noise_ranking.flip_labels``; that bench draws
its labels from the whole data set, so the two benches' label sets differ). The service's own head is
cross-fitted on the cached MiniLM vectors (``modelsvc.fitting.train_embeddings``, default settings) on

- ``clean``: the gold labels;
- ``noisy``: the flipped labels;
- ``reviewed``: the flipped labels after a reviewer who answers from gold decided the flags a
  training run opens: the service's flags (``labeling.services.training.label_issues.label_issues_rank``,
  cleanlab self-confidence on the out-of-fold probabilities, only what cleanlab counts as an issue, at
  most ``share`` of the labels), decided, then the head retrained; ``--rounds`` repeats flag, decide,
  retrain (decided labels are never flagged again, as in the service);
- ``clean_at_N`` (``--curve N ...``): the clean head at other label counts, the learning curve around ``labels``;
- ``noisy + N`` (``equal spend``): the flipped labels plus N more random pool labels, flipped at the same
  rate, N = the reviews spent: what the reviews' effort buys as new labels instead.

``recovered`` = (reviewed - noisy) / (clean - noisy) test accuracy, the issue's "share of the accuracy
lost to the noise" that review recovers, per seed, and the mean of the per-seed differences over seeds
with a 95 % t-interval. No database: the flags come from the service's own function on the same arrays.
"""

from __future__ import annotations

import argparse
import json
import math

import numpy as np

from bench._common import machine, setup_django
from bench.noise_ranking import flip_labels, interval, labeled_data, noise_parser

setup_django()  # the flags come from the service's own function, which lives beside the models

from labeling.services.training.label_issues import label_issues_rank  # noqa: E402
from modelsvc.calibration import evaluate_predictions  # noqa: E402
from modelsvc.config import TrainConfig  # noqa: E402
from modelsvc.encoder import EmbeddingCache, TextEncoder  # noqa: E402
from modelsvc.fitting import TrainResult, train_embeddings  # noqa: E402
from modelsvc.inference import score_embeddings  # noqa: E402

TEST_SIZE = 2000


def fit(emb: np.ndarray, y: np.ndarray, names: list[str], encoder_id: str, seed: int) -> TrainResult:
    return train_embeddings(
        emb, [names[c] for c in y], label_names=names, encoder_id=encoder_id, train_config=TrainConfig(seed=seed)
    )


def test_accuracy(result: TrainResult, emb: np.ndarray, y: np.ndarray) -> float:
    res = score_embeddings(result.classifier, emb)
    return float(evaluate_predictions(res.probs_uncalibrated, res.probs, y, res.uncertainty())["accuracy"])


def one_run(
    texts: list[str],
    y_all: np.ndarray,
    names: list[str],
    seed: int,
    args: argparse.Namespace,
    encoder: TextEncoder,
    cache: EmbeddingCache,
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    test, pool = order[:TEST_SIZE], order[TEST_SIZE:]
    idx = pool[: args.labels]
    gold = y_all[idx]
    given = flip_labels(gold, len(names), args.flip, rng)
    emb = encoder.encode([texts[i] for i in idx], cache=cache)
    test_emb, y_test = encoder.encode([texts[i] for i in test], cache=cache), y_all[test]

    def acc(y: np.ndarray, x: np.ndarray = emb) -> tuple[float, TrainResult]:
        result = fit(x, y, names, encoder.encoder_id, seed)
        return test_accuracy(result, test_emb, y_test), result

    clean, _ = acc(gold)
    noisy, result = acc(given)
    labels, decided, reviews, changed, caught = given.copy(), set(), 0, 0, 0
    reviewed = noisy
    for _ in range(args.rounds):
        assert result.oof_probs is not None
        flags = label_issues_rank(
            document_ids=list(range(len(idx))),
            labels=[names[c] for c in labels],
            label_names=names,
            oof_probs=result.oof_probs,
            share=args.share,
            decided=decided,
        )["document_ids"]
        for i in flags:  # the reviewer answers from gold; the decision replaces the label
            decided.add(i)
            changed += int(labels[i] != gold[i])
            caught += int(given[i] != gold[i])
            labels[i] = gold[i]
        reviews += len(flags)
        reviewed, result = acc(labels)
    extra = pool[args.labels : args.labels + reviews]
    more = flip_labels(y_all[extra], len(names), args.flip, np.random.default_rng([seed, 18]))
    spend_emb = np.concatenate([emb, encoder.encode([texts[i] for i in extra], cache=cache)])
    equal_spend, _ = acc(np.concatenate([given, more]), spend_emb)
    curve = {
        f"clean_at_{n}": acc(y_all[pool[:n]], encoder.encode([texts[i] for i in pool[:n]], cache=cache))[0]
        for n in args.curve
    }
    lost = clean - noisy
    return {
        **curve,
        "clean": clean,
        "noisy": noisy,
        "reviewed": reviewed,
        "equal_spend": equal_spend,
        "lost": lost,
        "recovered": (reviewed - noisy) / lost if lost > 0 else math.nan,
        "recovered_equal_spend": (reviewed - equal_spend) / lost if lost > 0 else math.nan,
        "wrong": int((given != gold).sum()),
        "reviews": reviews,
        "changed": changed,
        "wrong_left": int((labels != gold).sum()),
        "recall": caught / max(1, int((given != gold).sum())),
    }


def mean_pm(values: list[float]) -> str:
    mean, half = interval(values)
    return f"{mean:+.4f} ± {half:.4f}"


def main() -> None:
    parser = noise_parser(__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--curve", type=int, nargs="*", default=[], help="clean accuracy at these label counts too")
    args = parser.parse_args()
    print(json.dumps({"machine": machine(), "args": vars(args)}), flush=True)
    encoder = TextEncoder()
    cache = EmbeddingCache(args.cache)
    for data in args.data:
        texts, names, y_all = labeled_data(data)
        runs = []
        for seed in args.seeds:
            row = one_run(texts, y_all, names, seed, args, encoder, cache)
            print(json.dumps({"data": data, "seed": seed, **{k: round(v, 4) for k, v in row.items()}}), flush=True)
            runs.append(row)
        summary = {
            "lost to noise (clean - noisy)": mean_pm([r["lost"] for r in runs]),
            "reviewed - noisy": mean_pm([r["reviewed"] - r["noisy"] for r in runs]),
            "reviewed - equal spend": mean_pm([r["reviewed"] - r["equal_spend"] for r in runs]),
            "recovered share of the pooled loss": round(
                float(np.mean([r["reviewed"] - r["noisy"] for r in runs]) / np.mean([r["lost"] for r in runs])), 3
            ),
        }
        print(json.dumps({"data": data, "seeds": args.seeds, "mean": summary}), flush=True)


if __name__ == "__main__":
    main()
