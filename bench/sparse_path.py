"""A sparse linear path beside the head's logits, at the modelsvc level; one JSON line per run, then a summary.

    HF_HUB_OFFLINE=1 nice .venv/bin/python -m bench.sparse_path [--seeds 0 1 2] [--labels 250 500 1000]
        [--datasets trec rt-snippets] [--cache var/bench-cache.sqlite]

The design issue #20 measured outside the project (TF-IDF beside the frozen embedding lifted trec by 3-4
points at 500 / 1,000 random labels) and docs/MODELSVC.md "Hybrid sparse + dense features" named as the
next lever after the SVD block: the n-grams kept sparse, in a logistic regression whose log-probabilities
are added to every MC sample of the head (log-linear pooling), so the head's epistemic spread (BALD) is
kept and the pooled logits are calibrated by the service's own cross-fitted temperature choice.

Per data set and seed, as ``bench.hybrid_features``: 2,000 test documents drawn at random (never labeled,
never fitted on), the rest is the pool in a seeded random order, its first n documents are the labels.
Rows:

- ``embedding``: the service's head on the cached frozen vectors (``train_embeddings``, defaults).
- ``sparse-path``: ``train_embeddings`` with ``features="sparse"`` (``modelsvc.fitting.sparse_path_fit``):
  the same head, plus ``w`` x the log-probabilities of a logistic regression on the TF-IDF word and char
  n-grams (``modelsvc.features``' vectorizers, fitted on the unlabeled pool), cross-fitted on the head's
  own folds; (C, w) chosen on the out-of-fold NLL at its fitted temperature (w = 0 is a candidate: the
  path switches itself off), then ``temperature_choose`` as for the head alone. Deployed: the head's
  samples + w x the regression refitted on all n labels.
- ``lr-sparse+dense`` (reference, the issue's outside measurement): one logistic regression on
  [embedding, TF-IDF], C chosen on out-of-fold NLL, cross-fitted temperature; no MC samples.

Test accuracy and calibrated ECE per run and as means over seeds with a t-interval; ``train_s`` is the
fast tier's training time (head + regressions + choices, plus the TF-IDF fit on the pool). The rule that
decides is in docs/MODELSVC.md "A sparse linear path beside the head".
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from bench.hybrid_features import TEST_SIZE, encoded_builtin, random_split, summarize
from modelsvc.calibration import evaluate_predictions, temperature_choose
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.crossfit import fold_assignment
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.features import SPARSE_C_GRID, HybridFeatures, SparseDesign, fit_linear, fit_tfidf, linear_log_proba
from modelsvc.fitting import cross_fitted_log_proba, nll_at_fitted_temperature, train_embeddings
from modelsvc.inference import summarize_logits


def _row(kind: str, probs_uncal: np.ndarray, probs: np.ndarray, y: np.ndarray, uncertainty: Any) -> dict[str, Any]:
    m = evaluate_predictions(probs_uncal, probs, y, uncertainty)
    return {
        "features": kind,
        "accuracy": round(float(m["accuracy"]), 4),
        "ece": round(float(m["ece"]), 4),
        "nll": round(float(m["nll"]), 4),
    }


def run_one(
    texts: list[str],
    y: np.ndarray,
    names: list[str],
    emb: np.ndarray,
    encoder_id: str,
    *,
    seed: int,
    n_labels: int,
    tfidf: tuple[HybridFeatures, sp.csr_matrix, float],
) -> list[dict[str, Any]]:
    test, _, labeled = random_split(len(texts), seed=seed, n_labels=n_labels)
    vectorizers, x_sparse, tfidf_s = tfidf
    y_l, y_t = y[labeled], y[test]
    test_texts = [texts[i] for i in test]
    train_config = TrainConfig(seed=seed)
    rows = []

    # The head alone, and the head with the sparse path: the service's own training for both.
    for kind, config, sparse in (
        ("embedding", ModelConfig(), None),
        ("sparse-path", ModelConfig(features="sparse"), SparseDesign(tfidf=vectorizers, x=x_sparse[labeled])),
    ):
        t0 = time.perf_counter()
        result = train_embeddings(
            emb[labeled],
            y_l,
            label_names=names,
            encoder_id=encoder_id,
            model_config=config,
            train_config=train_config,
            sparse=sparse,
        )
        train_s = time.perf_counter() - t0
        clf = result.classifier
        res = summarize_logits(
            clf.sample_logits(clf.head_inputs(test_texts, emb[test])),
            temperature=clf.temperature,
            error_mapping=None,
            embeddings=emb[test],
        )
        row = {
            **_row(kind, res.probs_uncalibrated, res.probs, y_t, res.uncertainty()),
            "temperature": round(clf.temperature, 3),
        }
        if sparse is None:
            row["train_s"] = round(train_s, 2)
        else:
            path = result.calibration["sparse_path"]
            row |= {"train_s": round(train_s + tfidf_s, 2), "C": path["C"], "w": path["weight"]}
        rows.append(row)

    # Reference: one regression on [embedding, TF-IDF] (the outside design), on the head's folds.
    t2 = time.perf_counter()
    fold = fold_assignment(y_l, int(result.split_sizes["folds"]), np.random.default_rng(train_config.seed + 1))
    x_both = sp.hstack([sp.csr_matrix(emb), x_sparse], format="csr")
    xb_l = x_both[labeled]
    oof = {c: cross_fitted_log_proba(xb_l, y_l, fold, c, len(names))[:, None, :] for c in SPARSE_C_GRID}
    c_ref = min(SPARSE_C_GRID, key=lambda c: nll_at_fitted_temperature(oof[c], y_l))
    ref_choice = temperature_choose(oof[c_ref], y_l, fold)
    ref_test = linear_log_proba(x_both[test], *fit_linear(xb_l, y_l, c_ref, len(names)))[:, None, :]
    ref_res = summarize_logits(ref_test, temperature=ref_choice.temperature, error_mapping=None, embeddings=emb[test])
    rows.append(
        {
            **_row("lr-sparse+dense", ref_res.probs_uncalibrated, ref_res.probs, y_t, ref_res.uncertainty()),
            "train_s": round(time.perf_counter() - t2 + tfidf_s, 2),
            "C": c_ref,
            "temperature": round(ref_choice.temperature, 3),
        }
    )
    for r in rows:
        r.update(seed=seed, labels=n_labels)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["trec", "rt-snippets"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--labels", nargs="+", type=int, default=[250, 500, 1000])
    parser.add_argument("--cache", default="var/bench-cache.sqlite")
    args = parser.parse_args()
    encoder = TextEncoder(ModelConfig())
    cache = EmbeddingCache(args.cache)
    rows: list[dict[str, Any]] = []
    for name in args.datasets:
        texts, y, names, emb = encoded_builtin(name, encoder, cache)
        for seed in args.seeds:
            order = np.random.default_rng(seed).permutation(len(texts))
            t = time.perf_counter()
            # Fitted on the unlabeled pool (as the service fits its TF-IDF), applied to every text.
            vectorizers = fit_tfidf([texts[i] for i in order[TEST_SIZE:]], seed=seed)
            tfidf = (vectorizers, vectorizers.sparse(texts), time.perf_counter() - t)
            for n in args.labels:
                for row in run_one(texts, y, names, emb, encoder.encoder_id, seed=seed, n_labels=n, tfidf=tfidf):
                    row["dataset"] = name
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(json.dumps({"summary": summarize(rows)}, indent=1))


if __name__ == "__main__":
    main()
