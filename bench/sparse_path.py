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
- ``sparse-path``: the same head, plus ``w`` x the log-probabilities of a logistic regression on the
  TF-IDF word and char n-grams (``modelsvc.features``' vectorizers, fitted on the unlabeled pool).
  Out of fold: the regression is cross-fitted on the head's own folds (``fold_assignment`` with the
  head's seed), so each label's pooled logits come from models that never saw it; (C, w) are chosen on
  the out-of-fold NLL at its fitted temperature (w = 0 is a candidate: the path switches itself off),
  then ``temperature_choose`` decides the temperature as the service does. Deployed: the head's samples
  + w x the regression refitted on all n labels.
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
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from bench.hybrid_features import TEST_SIZE, encoded_builtin, summarize
from modelsvc.calibration import evaluate_predictions, fit_temperature, temperature_choose, tempered_samples
from modelsvc.config import ModelConfig, TrainConfig
from modelsvc.crossfit import fold_assignment
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.features import fit_hybrid
from modelsvc.fitting import train_embeddings
from modelsvc.inference import summarize_logits

C_GRID = (1.0, 4.0, 16.0)
W_GRID = (0.0, 0.5, 1.0, 2.0)


def _lr(x: Any, y: np.ndarray, c: float) -> LogisticRegression:
    with threadpool_limits(limits=1, user_api="blas"):
        return LogisticRegression(C=c, max_iter=2000).fit(x, y)


def _log_proba(model: LogisticRegression, x: Any, n_classes: int) -> np.ndarray:
    """(N, C) log-probabilities over all classes (a fold missing a class gets log 1e-6 there)."""
    out = np.full((x.shape[0], n_classes), np.log(1e-6))
    out[:, model.classes_] = model.predict_log_proba(x)
    return out


def oof_log_proba(x: Any, y: np.ndarray, fold: np.ndarray, c: float, n_classes: int) -> np.ndarray:
    out = np.empty((len(y), n_classes))
    for f in np.unique(fold):
        held = fold == f
        out[held] = _log_proba(_lr(x[~held], y[~held], c), x[held], n_classes)
    return out


def _nll_at_fitted_t(logits: np.ndarray, y: np.ndarray) -> float:
    probs = tempered_samples(logits, fit_temperature(logits, y)).mean(1)
    return float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)).mean())


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
    tfidf: tuple[sp.csr_matrix, float],
) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    test, pool = order[:TEST_SIZE], order[TEST_SIZE:]
    labeled = pool[:n_labels]
    x_sparse, tfidf_s = tfidf
    c_n = len(names)
    y_l, y_t = y[labeled], y[test]
    rows = []

    t0 = time.perf_counter()
    train_config = TrainConfig(seed=seed)
    result = train_embeddings(
        emb[labeled],
        y_l,
        label_names=names,
        encoder_id=encoder_id,
        model_config=ModelConfig(),
        train_config=train_config,
    )
    head_s = time.perf_counter() - t0
    clf = result.classifier
    head_test = clf.sample_logits(emb[test])  # (N, S, C)
    base = summarize_logits(head_test, temperature=clf.temperature, error_mapping=None, embeddings=emb[test])
    rows.append(
        {
            **_row("embedding", base.probs_uncalibrated, base.probs, y_t, base.uncertainty()),
            "train_s": round(head_s, 2),
            "temperature": round(clf.temperature, 3),
        }
    )

    # The sparse path, on the head's own folds.
    t1 = time.perf_counter()
    k = int(result.split_sizes["folds"])
    fold = fold_assignment(y_l, k, np.random.default_rng(train_config.seed + 1))
    head_oof = result.oof_logits  # (N, S/K, C), each from the document's own fold's members
    xs_l = x_sparse[labeled]
    best = None
    for c in C_GRID:
        lp = oof_log_proba(xs_l, y_l, fold, c, c_n)
        for w in W_GRID:
            nll = _nll_at_fitted_t(head_oof + w * lp[:, None, :], y_l)
            if best is None or nll < best[0] - 1e-9:
                best = (nll, c, w, lp)
    _, c_best, w_best, lp_best = best
    pooled_oof = head_oof + w_best * lp_best[:, None, :]
    choice = temperature_choose(pooled_oof, y_l, fold)
    lr_test = _log_proba(_lr(xs_l, y_l, c_best), x_sparse[test], c_n) if w_best else np.zeros((len(test), c_n))
    path_s = time.perf_counter() - t1
    pooled = summarize_logits(
        head_test + w_best * lr_test[:, None, :],
        temperature=choice.temperature,
        error_mapping=None,
        embeddings=emb[test],
    )
    rows.append(
        {
            **_row("sparse-path", pooled.probs_uncalibrated, pooled.probs, y_t, pooled.uncertainty()),
            "train_s": round(head_s + path_s + tfidf_s, 2),
            "path_s": round(path_s, 2),
            "temperature": round(choice.temperature, 3),
            "C": c_best,
            "w": w_best,
        }
    )

    # Reference: one regression on [embedding, TF-IDF] (the outside design).
    t2 = time.perf_counter()
    x_both = sp.hstack([sp.csr_matrix(emb), x_sparse], format="csr")
    xb_l = x_both[labeled]
    ref = min(
        (
            (_nll_at_fitted_t(lp[:, None, :], y_l), c, lp)
            for c in C_GRID
            for lp in [oof_log_proba(xb_l, y_l, fold, c, c_n)]
        ),
        key=lambda r: r[0],
    )
    ref_choice = temperature_choose(ref[2][:, None, :], y_l, fold)
    ref_test = _log_proba(_lr(xb_l, y_l, ref[1]), x_both[test], c_n)[:, None, :]
    ref_res = summarize_logits(ref_test, temperature=ref_choice.temperature, error_mapping=None, embeddings=emb[test])
    rows.append(
        {
            **_row("lr-sparse+dense", ref_res.probs_uncalibrated, ref_res.probs, y_t, ref_res.uncertainty()),
            "train_s": round(time.perf_counter() - t2 + tfidf_s, 2),
            "C": ref[1],
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
            features = fit_hybrid([texts[i] for i in order[TEST_SIZE:]], dims=1, seed=seed)
            tfidf = (features.sparse(texts), time.perf_counter() - t)
            for n in args.labels:
                for row in run_one(texts, y, names, emb, encoder.encoder_id, seed=seed, n_labels=n, tfidf=tfidf):
                    row["dataset"] = name
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print(json.dumps({"summary": summarize(rows)}, indent=1))


if __name__ == "__main__":
    main()
