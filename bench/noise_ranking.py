"""Which ranking of given labels finds the flipped ones: recall and precision in the flagged top share.

    HF_HUB_OFFLINE=1 nice .venv/bin/python -m bench.noise_ranking [--cache var/bench-cache.sqlite]
        [--data rt-snippets trec] [--seeds 0 1 2] [--labels 1000] [--flip 0.15] [--share 0.1]

Per data set and seed: ``labels`` documents drawn at random (``default_rng(seed)``), ``round(flip *
labels)`` of them, drawn by the same generator, get a uniformly chosen other class. The service's own
head is cross-fitted on the cached MiniLM vectors (``modelsvc.fitting.train_embeddings``, default
settings, ``TrainConfig(seed)``), exactly as a training run does; from the same fold heads come

- ``mc``:  ``TrainResult.oof_probs``, the MC-dropout-averaged calibrated out-of-fold probabilities the
  service ranks by today;
- ``ens``: the mean over each document's own-fold members with dropout off (the plain fold ensemble),
  at the same temperature.

Each ranking orders the labels most suspect first and flags the first ``ceil(share * N)``; "filter"
keeps only what cleanlab's ``find_label_issues`` counts as an issue (as ``label_issues_rank`` does
today with ``prune_by_noise_rate``), so a filtered ranking may flag fewer. ``knn`` is the
similarity-weighted share of a label's 10 nearest labeled neighbours (cosine on the vectors, itself
left out) that carry the same given label; ``blend`` averages the percentile ranks of ``mc``
self-confidence and ``knn``; ``datalab`` is cleanlab's ``Datalab`` label issue from the vectors alone
(its own kNN out-of-sample probabilities). Prints one JSON line per (data, seed) and a table of the mean
over seeds with a 95 % t-interval, and the paired difference from today's ranking.
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
from scipy import stats

from bench._common import machine
from modelsvc.calibration import tempered_samples
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.crossfit import fold_assignment, n_folds, out_of_fold_logits
from modelsvc.datasets import load_builtin
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.features import SparseDesign, fit_hybrid
from modelsvc.fitting import train_embeddings
from modelsvc.model import eval_mode
from modelsvc.noise import flag_precision_recall, flag_top

TODAY = "mc self_confidence, filter prune_by_noise_rate (today)"
CLEAN = "trained on gold labels (diagnostic)"
SPARSE = "sparse path"
SPARSE_CLEAN = "sparse path trained on gold labels (diagnostic)"
#: The variants that train on the gold labels: how well could that model flag with no noise to learn from?
GOLD_TRAINED = (CLEAN, SPARSE_CLEAN)


def flip_labels(y: np.ndarray, n_classes: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    """A copy of y (N,) with round(rate * N) random items moved to a uniformly chosen other class."""
    noisy = y.copy()
    chosen = rng.choice(len(y), size=round(rate * len(y)), replace=False)
    shift = rng.integers(1, n_classes, size=len(chosen))  # 1..C-1: never the same class
    noisy[chosen] = (y[chosen] + shift) % n_classes
    return noisy


def ensemble_probs(result, emb: np.ndarray, y: np.ndarray, train_config: TrainConfig) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(N, C) out-of-fold probabilities of the fold members with dropout off, at the run's temperature."""
    clf = result.classifier
    k = n_folds(y, train_config.folds)
    fold = fold_assignment(y, k, np.random.default_rng(train_config.seed + 1))  # the run's own folds
    x = torch.as_tensor(np.ascontiguousarray(emb, dtype=np.float32))
    with torch.no_grad(), eval_mode(clf.head):
        logits = clf.head(x, k=clf.head.n_members).numpy()  # (N, K*M, C): each member once
    per_fold = clf.head.n_members // k
    own = out_of_fold_logits(logits, fold, per_fold)  # (N, M, C)
    return tempered_samples(own, clf.temperature).mean(1)


def knn_consistency(emb: np.ndarray, y: np.ndarray, k: int = 10) -> np.ndarray:
    """(N,) similarity-weighted share of the k nearest other labeled items that share the given label."""
    z = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sim = z @ z.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argsort(-sim, axis=1, kind="stable")[:, :k]  # (N, k)
    w = np.clip(np.take_along_axis(sim, nn, axis=1), 0.0, None) + 1e-9
    return (w * (y[nn] == y[:, None])).sum(1) / w.sum(1)


def datalab_scores(emb: np.ndarray, y: np.ndarray) -> np.ndarray | None:
    """Cleanlab Datalab's label quality from the vectors alone, or None when it does not run here."""
    try:
        from cleanlab import Datalab

        lab = Datalab(data={"label": y.tolist()}, label_name="label", verbosity=0)
        lab.find_issues(features=np.ascontiguousarray(emb, dtype=np.float32), issue_types={"label": {}})
        return np.asarray(lab.get_issues("label")["label_score"], dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - a bench row that cannot run is reported, not fatal
        print(json.dumps({"datalab_error": repr(exc)[:200]}), flush=True)
        return None


def percentile(scores: np.ndarray) -> np.ndarray:
    return stats.rankdata(scores) / len(scores)


def issues(y: np.ndarray, probs: np.ndarray, filter_by: str) -> np.ndarray:
    mask = np.zeros(len(y), dtype=bool)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mask[find_label_issues(y, probs, filter_by=filter_by, n_jobs=1)] = True
    return mask


def evaluate(scores: np.ndarray, keep: np.ndarray | None, wrong: np.ndarray, share: float) -> dict[str, float]:
    """Flag the first ``share`` of the labels by ascending score (among ``keep``); precision and recall."""
    order = np.argsort(scores, kind="stable")
    budget = len(flag_top(order, share))
    if keep is not None:
        order = order[keep[order]]
    flagged = order[:budget]
    precision, recall = flag_precision_recall(flagged, wrong)
    return {"precision": precision, "recall": recall, "flagged": float(len(flagged))}


def one_run(
    texts: list[str],
    y_all: np.ndarray,
    names: list[str],
    seed: int,
    args: argparse.Namespace,
    encoder: TextEncoder,
    cache: EmbeddingCache,
) -> dict[str, dict[str, float]]:
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(texts), size=args.labels, replace=False)
    gold = y_all[idx]
    y = flip_labels(gold, len(names), args.flip, rng)
    wrong = y != gold
    emb = encoder.encode([texts[i] for i in idx], cache=cache)
    config = TrainConfig(seed=seed)
    result = train_embeddings(
        emb, [names[c] for c in y], label_names=names, encoder_id=encoder.encoder_id, train_config=config
    )
    mc = np.asarray(result.oof_probs, dtype=np.float64)
    ens = ensemble_probs(result, emb, y, config)
    quality: dict[str, Callable[[], np.ndarray]] = {
        "mc self_confidence": lambda: get_label_quality_scores(y, mc, method="self_confidence"),
        "mc normalized_margin": lambda: get_label_quality_scores(y, mc, method="normalized_margin"),
        "mc confidence_weighted_entropy": lambda: get_label_quality_scores(y, mc, method="confidence_weighted_entropy"),
        "ens self_confidence": lambda: get_label_quality_scores(y, ens, method="self_confidence"),
        "ens normalized_margin": lambda: get_label_quality_scores(y, ens, method="normalized_margin"),
    }
    scores = {name: np.asarray(fn(), dtype=np.float64) for name, fn in quality.items()}
    scores["knn"] = knn_consistency(emb, y)
    scores["blend mc self_confidence + knn"] = (
        percentile(scores["mc self_confidence"]) + percentile(scores["knn"])
    ) / 2
    dl = datalab_scores(emb, y)
    if dl is not None:
        scores["datalab label (vectors only)"] = dl
    prune = {"mc": issues(y, mc, "prune_by_noise_rate"), "ens": issues(y, ens, "prune_by_noise_rate")}
    both = issues(y, mc, "both")
    rows: dict[str, dict[str, float]] = {}
    rows[TODAY] = evaluate(scores["mc self_confidence"], prune["mc"], wrong, args.share)
    rows["mc self_confidence, filter both"] = evaluate(scores["mc self_confidence"], both, wrong, args.share)
    for name, s in scores.items():
        rows[f"{name}, no filter"] = evaluate(s, None, wrong, args.share)
        if name != "mc self_confidence":
            keep = prune["ens"] if name.startswith("ens") else prune["mc"]
            rows[f"{name}, filter prune_by_noise_rate"] = evaluate(s, keep, wrong, args.share)
    accuracy: dict[str, float] = {}
    # TF-IDF is fitted on the labeled texts plus the data set's other texts, the pool a project would hold
    labeled = set(idx.tolist())
    pool = [t for j, t in enumerate(texts) if j not in labeled]
    for variant, (model_config, train_config) in head_variants(seed).items():
        if variant not in args.variants:
            continue
        vemb, sparse = emb, None
        if model_config.features == "hybrid":
            hybrid = fit_hybrid([texts[i] for i in idx] + pool, dims=model_config.sparse_dims, seed=seed)
            vemb = hybrid.augment([texts[i] for i in idx], emb)
        elif model_config.features == "sparse":
            sparse = SparseDesign.build([texts[i] for i in idx], pool, seed=seed)
        fit_on = gold if variant in GOLD_TRAINED else y
        other = train_embeddings(
            vemb,
            [names[c] for c in fit_on],
            label_names=names,
            encoder_id=encoder.encoder_id,
            model_config=model_config,
            train_config=train_config,
            sparse=sparse,
        )
        vp = np.asarray(other.oof_probs, dtype=np.float64)
        sc = np.asarray(get_label_quality_scores(y, vp, method="self_confidence"), dtype=np.float64)
        rows[f"{variant}: mc self_confidence, filter prune_by_noise_rate"] = evaluate(
            sc, issues(y, vp, "prune_by_noise_rate"), wrong, args.share
        )
        accuracy[f"oof_accuracy_vs_gold {variant}"] = float((vp.argmax(1) == gold).mean())
        rows[f"{variant}: blend with today's mc"] = evaluate(
            (percentile(sc) + percentile(scores["mc self_confidence"])) / 2, prune["mc"], wrong, args.share
        )
    rows["_run"] = {
        "oof_accuracy_vs_given": float((mc.argmax(1) == y).mean()),
        "oof_accuracy_vs_gold": float((mc.argmax(1) == gold).mean()),
        "wrong": float(wrong.sum()),
        "issues_prune_mc": float(prune["mc"].sum()),
        "issues_both_mc": float(both.sum()),
        **accuracy,
    }
    return rows


def head_variants(seed: int) -> dict[str, tuple[ModelConfig, TrainConfig]]:
    """Other settings of the service's own head (``--variants``): out-of-fold probabilities to rank by."""
    return {
        "hybrid features": (ModelConfig(features="hybrid"), TrainConfig(seed=seed)),
        "10 folds": (ModelConfig(), TrainConfig(seed=seed, folds=10)),
        CLEAN: (ModelConfig(), TrainConfig(seed=seed)),
        SPARSE: (ModelConfig(features="sparse"), TrainConfig(seed=seed)),
        SPARSE_CLEAN: (ModelConfig(features="sparse"), TrainConfig(seed=seed)),
    }


def interval(values: list[float]) -> tuple[float, float]:
    """Mean and 95 % t half-width over seeds (0 with one seed)."""
    a = np.asarray(values, dtype=np.float64)
    if len(a) < 2:
        return float(a.mean()), 0.0
    return float(a.mean()), float(stats.t.ppf(0.975, len(a) - 1) * a.std(ddof=1) / math.sqrt(len(a)))


def noise_parser(description: str) -> argparse.ArgumentParser:
    """The options the label-noise benches share: data sets, seeds, labels, flip rate, flagged share."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--cache", default="var/bench-cache.sqlite")
    parser.add_argument("--data", nargs="+", default=["rt-snippets", "trec"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--labels", type=int, default=1000)
    parser.add_argument("--flip", type=float, default=0.15)
    parser.add_argument("--share", type=float, default=0.1)
    return parser


def labeled_data(name: str) -> tuple[list[str], list[str], np.ndarray]:
    """A built-in data set's texts, its sorted label names and the gold labels (N,) as indices into them."""
    texts, labels = load_builtin(name)
    names = sorted(set(labels))
    return texts, names, np.array([names.index(label) for label in labels])


def main() -> None:
    parser = noise_parser(__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=[], choices=list(head_variants(0)))
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}), flush=True)
    encoder = TextEncoder()
    cache = EmbeddingCache(args.cache)
    for data in args.data:
        texts, names, y_all = labeled_data(data)
        runs = []
        for seed in args.seeds:
            rows = one_run(texts, y_all, names, seed, args, encoder, cache)
            print(json.dumps({"data": data, "seed": seed, "rows": rows}), flush=True)
            runs.append(rows)
        print(
            f"\n{data}: seeds {args.seeds}, {args.labels} labels, {args.flip:.0%} flipped, top {args.share:.0%}; "
            "mean [95 % t-interval over seeds]; recall - today's recall, paired"
        )
        print("| ranking | recall | precision | flagged | recall - today |\n|---|---|---|---|---|")
        for name in runs[0]:
            if name.startswith("_"):
                continue
            rec = interval([r[name]["recall"] for r in runs])
            pre = interval([r[name]["precision"] for r in runs])
            diff = interval([r[name]["recall"] - r[TODAY]["recall"] for r in runs])
            flagged = np.mean([r[name]["flagged"] for r in runs])
            print(
                f"| {name} | {rec[0]:.3f} ± {rec[1]:.3f} | {pre[0]:.3f} ± {pre[1]:.3f} | {flagged:.0f} | "
                f"{diff[0]:+.3f} ± {diff[1]:.3f} |"
            )
        run_info = {k: float(np.mean([r["_run"][k] for r in runs])) for k in runs[0]["_run"]}
        print(json.dumps({"data": data, "mean_run": run_info}), flush=True)


if __name__ == "__main__":
    main()
