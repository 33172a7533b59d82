"""Cold start: what to label before the first trained model, from the embeddings alone.

Two orders over the unlabeled pool, both pure array code:

- ``typiclust_order``: TypiClust (Hacohen, Dekel and Weinshall, ICML 2022), scikit-activeml's
  implementation. k-means into (labeled + budget) clusters; from each cluster that holds no labeled
  document, largest first, the most typical document (the highest inverse mean distance to its k
  nearest neighbours inside the cluster). Typical and diverse: low-budget learning gains most from
  documents that represent a dense region, one per region.
- ``zero_shot_probabilities`` / ``zero_shot_order``: where the labels have descriptions, the
  documents' cosine similarity to each description's embedding (same encoder), a softmax with a
  temperature, ranked by the queue's uncertainty (margin), so the queue is ranked from the first
  label on. No training and no labels are involved: it is not a model and is never promoted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelsvc.uncertainty import margin as _margin

#: Neighbours for TypiClust's typicality (the paper uses 20; fewer in a small cluster).
TYPICALITY_K = 20
#: Softmax temperature over cosine similarities: cosines of one encoder's sentence embeddings to
#: different label descriptions differ by a few hundredths, so a temperature near 0.05 is needed
#: for the probabilities to be anything but uniform (CLIP-style zero-shot uses 0.01).
ZERO_SHOT_TEMPERATURE = 0.05


def typiclust_order(
    embeddings: np.ndarray, *, budget: int, seed: int, labeled: Sequence[int] = (), k: int = TYPICALITY_K
) -> np.ndarray:
    """Up to ``budget`` row indices of ``embeddings`` (N, H), in the order to label them.

    ``labeled``: rows already labeled; their clusters count as covered and they are never returned.
    Deterministic for a seed (k-means and ties are seeded). When the budget exceeds the unlabeled
    rows, every unlabeled row is returned, covered clusters' rows last.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    n = x.shape[0]
    labeled_set = set(int(i) for i in labeled)
    unlabeled = n - len(labeled_set)
    if budget < 1 or unlabeled < 1:
        return np.zeros(0, dtype=np.int64)
    budget = min(budget, unlabeled)
    if n - 1 <= budget + len(labeled_set):  # as many clusters as points: every document is its own cluster
        return np.array([i for i in range(n) if i not in labeled_set][:budget], dtype=np.int64)
    # Imported here: scikit-activeml imports its whole strategy zoo (and torch) on first use, 3 s of CPU.
    from skactiveml.pool import TypiClust

    y = np.full(n, np.nan)
    y[list(labeled_set)] = 0.0
    strategy = TypiClust(
        random_state=seed, k=k, cluster_algo_dict={"n_init": 1, "random_state": seed}, missing_label=np.nan
    )
    order = strategy.query(x, y, batch_size=budget)
    return np.asarray(order, dtype=np.int64)


def label_prompt(name: str, text: str = "", note: str = "") -> str:
    """The description a label is encoded as: its name, its display text and its guideline note, once each."""
    parts: list[str] = []
    for part in (name, text, note):
        part = " ".join(str(part or "").split())
        if part and part.lower() not in (p.lower() for p in parts):
            parts.append(part)
    return ": ".join(parts[:2]) + (". " + ". ".join(parts[2:]) if len(parts) > 2 else "")


def zero_shot_probabilities(
    embeddings: np.ndarray, label_embeddings: np.ndarray, *, temperature: float = ZERO_SHOT_TEMPERATURE
) -> np.ndarray:
    """Class probabilities (N, C): softmax over cosine(document (N, H), label description (C, H)) / T."""
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    docs = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(label_embeddings, dtype=np.float64)
    docs = docs / np.maximum(np.linalg.norm(docs, axis=1, keepdims=True), 1e-12)
    labels = labels / np.maximum(np.linalg.norm(labels, axis=1, keepdims=True), 1e-12)
    logits = docs @ labels.T / temperature  # (N, C)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def zero_shot_order(probabilities: np.ndarray, *, budget: int) -> np.ndarray:
    """Up to ``budget`` row indices of ``probabilities`` (N, C), smallest margin (most uncertain) first.

    Ties keep row order, so the order is deterministic.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    gap = _margin(p[:, None, :])  # (N,): top-two probability gap; small = uncertain
    order = np.argsort(gap, kind="stable")
    return order[: max(budget, 0)].astype(np.int64)
