"""Quality benchmark on real data (rt-snippets, trec); prints one JSON object per experiment.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.quality [--cache var/bench-cache.sqlite] [--pooling mean]
        [--fine-tune top2] [--datasets trec]

Each dataset is encoded once through the embedding cache, so re-runs only fit heads. With
``--fine-tune topN`` the frozen lower layers run once per document of the dataset (not cached), every
seed fine-tunes the top N layers + head on its training part (``modelsvc.finetune.train_prefix``) and
embeds its test part through the tuned layers.
1. rt-snippets: 500 labels (seeded stratified sample), the rest as test; TF-IDF + LR on the same
   500 labels as the baseline, measured in the same run.
2. trec: stratified 80/20 on the full pool; TF-IDF + LR baseline on the same split.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import time
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split

from modelsvc.calibration import evaluate_predictions
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.datasets import load_builtin
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.finetune import PrefixStates, embed_prefix, encode_prefix, train_prefix
from modelsvc.fitting import TrainResult, encode_labels, train_embeddings
from modelsvc.inference import score_embeddings
from modelsvc.tuning import first_tuned_layer, transformer_layers


def tfidf_lr(train_x: list[str], train_y: np.ndarray, test_x: list[str], test_y: np.ndarray) -> float:
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    lr = LogisticRegression(max_iter=2000, C=10.0, class_weight="balanced")
    lr.fit(vec.fit_transform(train_x), train_y)
    return float(accuracy_score(test_y, lr.predict(vec.transform(test_x))))


def experiment(
    name: str,
    texts: list[str],
    labels: list[str],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    emb: np.ndarray,
    encoder_id: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
) -> dict[str, Any]:
    names = sorted(set(labels))
    t0 = time.perf_counter()
    result = train_embeddings(
        emb[train_idx],
        [labels[i] for i in train_idx],
        label_names=names,
        encoder_id=encoder_id,
        model_config=model_config,
        train_config=train_config,
    )
    train_s = time.perf_counter() - t0
    return report(name, texts, labels, train_idx, test_idx, result, emb[test_idx], train_s)


def experiment_fine_tuned(
    name: str,
    texts: list[str],
    labels: list[str],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    prefix: PrefixStates,
    encoder: TextEncoder,
    model_config: ModelConfig,
    train_config: TrainConfig,
) -> dict[str, Any]:
    """Fine-tune on the training part's prefix states; embed the test part through the tuned layers."""
    t0 = time.perf_counter()
    result, top = train_prefix(
        prefix.subset(train_idx),
        [labels[i] for i in train_idx],
        label_names=sorted(set(labels)),
        encoder=encoder,
        model_config=model_config,
        train_config=train_config,
    )
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    test_emb = embed_prefix(top, prefix.subset(test_idx), model_config.batch_tokens)
    out = report(name, texts, labels, train_idx, test_idx, result, test_emb, train_s)
    out["test_top_layers_seconds"] = round(time.perf_counter() - t1, 2)
    out["fine_tune_epochs_run"] = result.calibration["fine_tune"]["epochs"]
    out["fine_tune_best_epoch"] = result.calibration["fine_tune"]["best_epoch"]
    out["probe_seconds"] = round(result.timings["probe"], 2)
    out["val_loss_by_epoch"] = [round(h["val_loss"], 4) for h in result.history if "fine_tune_epoch" in h]
    out["encoder_id"] = result.classifier.encoder_id
    out["refit"] = result.calibration["fine_tune"].get("refit")
    out["refit_seconds"] = round(result.timings.get("refit", 0.0), 1)
    return out


def report(
    name: str,
    texts: list[str],
    labels: list[str],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    result: TrainResult,
    test_emb: np.ndarray,
    train_s: float,
) -> dict[str, Any]:
    """Test-set metrics of a trained classifier and the TF-IDF+LR baseline on the same split."""
    y = encode_labels(labels, result.classifier.label_names)
    res = score_embeddings(result.classifier, test_emb)
    m = evaluate_predictions(res.probs_uncalibrated, res.probs, y[test_idx], res.uncertainty())
    baseline = tfidf_lr([texts[i] for i in train_idx], y[train_idx], [texts[i] for i in test_idx], y[test_idx])
    return {
        "experiment": name,
        "n_train": int(len(train_idx)),
        "n_test": int(len(test_idx)),
        "accuracy": round(m["accuracy"], 4),
        "tfidf_lr_accuracy": round(baseline, 4),
        "macro_f1": round(m["macro_f1"], 4),
        "ece": round(m["ece"], 4),
        "ece_uncalibrated": round(m["ece_uncalibrated"], 4),
        "mce": round(m["mce"], 4),
        "nll": round(m["nll"], 4),
        "brier": round(m["brier"], 4),
        # the headline error AUROC is always the calibrated predictive entropy (one rule, every seed)
        "auroc_error_entropy": m["auroc_error"] and round(m["auroc_error"], 4),
        "auroc_by_score": {k: v and round(v, 4) for k, v in m["auroc_by_score"].items()},
        "temperature": round(result.classifier.temperature, 3),
        "members": result.classifier.head.n_members,
        "own_metrics_split": result.metrics.get("split"),
        "own_accuracy": result.metrics.get("accuracy") and round(result.metrics["accuracy"], 4),
        "own_ece": result.metrics.get("ece") and round(result.metrics["ece"], 4),
        "epochs": len(result.history),
        "train_seconds": round(train_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", default="var/bench-cache.sqlite")
    parser.add_argument("--pooling", default=ModelConfig.pooling, choices=["mean", "cls", "mean_max", "mean_mid"])
    parser.add_argument("--members", type=int, default=ModelConfig.n_members)
    parser.add_argument("--samples", type=int, default=ModelConfig.samples)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--labels", type=int, default=500, help="rt-snippets labeled pool size")
    parser.add_argument("--folds", type=int, default=TrainConfig.folds, help="0 = single calibration split")
    parser.add_argument("--fine-tune", default=TrainConfig.fine_tune, help="frozen (default), topN (e.g. top2), full")
    parser.add_argument("--fine-tune-epochs", type=int, default=TrainConfig.fine_tune_epochs)
    parser.add_argument("--encoder-lr", type=float, default=TrainConfig.encoder_learning_rate)
    parser.add_argument("--fine-tune-refit", action=argparse.BooleanOptionalAction, default=TrainConfig.fine_tune_refit)
    parser.add_argument("--class-weights", action=argparse.BooleanOptionalAction, default=TrainConfig.class_weights)
    parser.add_argument("--datasets", nargs="+", default=["rt-snippets", "trec"], choices=["rt-snippets", "trec"])
    args = parser.parse_args()
    load = os.getloadavg()
    print(json.dumps({"uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}))
    config = ModelConfig(pooling=args.pooling, n_members=args.members, samples=args.samples)
    encoder = TextEncoder(config)
    cache = EmbeddingCache(args.cache)
    tuned = args.fine_tune != "frozen"
    train_config = TrainConfig(
        fine_tune=args.fine_tune,
        fine_tune_epochs=args.fine_tune_epochs,
        encoder_learning_rate=args.encoder_lr,
        fine_tune_refit=args.fine_tune_refit,
        class_weights=args.class_weights,
        folds=args.folds,
    )
    for dataset in args.datasets:
        texts, labels = load_builtin(dataset)
        t0 = time.perf_counter()
        if tuned:
            first = first_tuned_layer(args.fine_tune, len(transformer_layers(encoder.base_model)))
            prefix = encode_prefix(encoder, texts, first)
            timing = {"frozen_lower_layers_seconds": round(time.perf_counter() - t0, 1), "first_tuned_layer": first}
        else:
            emb = encoder.encode(texts, cache=cache)
            timing = {"encode_or_cache_seconds": round(time.perf_counter() - t0, 1)}
        print(json.dumps({"dataset": dataset, "docs": len(texts), **timing, "load": os.getloadavg()}))
        y = np.asarray(labels)
        for seed in args.seeds:
            if dataset == "rt-snippets":
                train_idx, test_idx = train_test_split(
                    np.arange(len(texts)), train_size=args.labels, stratify=y, random_state=seed
                )
                name = f"rt-snippets {args.labels} labels"
            else:
                train_idx, test_idx = train_test_split(
                    np.arange(len(texts)), test_size=0.2, stratify=y, random_state=seed
                )
                name = "trec 80/20"
            seeded = dataclasses.replace(train_config, seed=seed)
            split = (name, texts, labels, train_idx, test_idx)
            if tuned:
                out = experiment_fine_tuned(*split, prefix, encoder, config, seeded)
            else:
                out = experiment(*split, emb, encoder.encoder_id, config, seeded)
            out.update({"seed": seed, "pooling": args.pooling, "members": args.members, "samples": args.samples})
            out.update({"fine_tune": args.fine_tune, "class_weights": args.class_weights, "load": os.getloadavg()})
            print(json.dumps(out))
    print(json.dumps({"load_at_start": [round(x, 2) for x in load], "load_at_end": os.getloadavg()}))


if __name__ == "__main__":
    main()
