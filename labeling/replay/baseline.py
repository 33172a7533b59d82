"""The plain baseline of a replay: what a labeling tool with a standard ML backend gives.

Random order over the pool (seeded), the frozen encoder mean-pooled (``pooling="mean"``, not the
service's ``mean_mid``), and scikit-learn's logistic regression (default settings) refitted on the
first n labels at each round, measured on the replay's own test split. No queue, no gate, no
calibration: a curve of records shaped like the service's (``strategy`` = ``plain baseline``).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression

from labeling.services import modeling
from modelsvc.calibration import evaluate_predictions

CURVE = "plain baseline"


def plain_baseline(
    *, texts: list[str], labels: list[str], pool: np.ndarray, test: np.ndarray, seed: int, budget: int, batch: int
) -> list[dict[str, Any]]:
    """One record per ``batch`` labels up to ``budget`` (pool and test are indices into texts/labels)."""
    config = dataclasses.replace(modeling.model_config(), pooling="mean")
    encoder = modeling.encoder_for(config)
    cache = modeling.embedding_cache_for(encoder.encoder_id)
    names = sorted(set(labels))
    y = np.asarray([names.index(lab) for lab in labels])
    order = np.random.default_rng([seed, 20]).permutation(pool)[:budget]
    x_pool = encoder.encode([texts[i] for i in order], cache=cache)  # (B, H)
    x_test = encoder.encode([texts[i] for i in test], cache=cache)  # (T, H)
    records = []
    for n in range(batch, min(budget, len(order)) + 1, batch):
        t0 = time.perf_counter()
        y_train = y[order[:n]]
        if len(set(y_train.tolist())) < 2:
            continue
        lr = LogisticRegression(max_iter=2000).fit(x_pool[:n], y_train)
        probs = np.zeros((len(test), len(names)))
        probs[:, lr.classes_] = lr.predict_proba(x_test)  # (T, C): classes not seen yet get 0
        metrics = evaluate_predictions(probs, probs, y[test], {})
        records.append(
            {
                "strategy": CURVE,
                "seed": seed,
                "labels": n,
                "round_s": round(time.perf_counter() - t0, 2),
                **{k: metrics[k] for k in ("accuracy", "macro_f1", "ece")},
            }
        )
    return records
