"""Uncertainty measures: pure functions over sample probabilities ``samples`` of shape (N, K, C).

N documents, K stochastic samples (MC dropout / ensemble members), C classes. Natural logs
(nats). With ``p̄ = mean_k p_k``:

- predictive entropy (total)   H[p̄]
- expected entropy (aleatoric) mean_k H[p_k]
- mutual information (BALD, epistemic) H[p̄] - mean_k H[p_k]  (>= 0)
- margin                       p̄(top1) - p̄(top2)   (small = uncertain)
- variation ratio              1 - (share of samples voting for the modal class)
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def _check(samples: np.ndarray) -> np.ndarray:
    s = np.asarray(samples, dtype=np.float64)
    if s.ndim != 3:
        raise ValueError(f"samples must have shape (N, K, C), got {s.shape}")
    return s


def entropy(probs: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy in nats along ``axis``; 0 * log 0 = 0."""
    p = np.asarray(probs, dtype=np.float64)
    return -(p * np.log(np.clip(p, _EPS, 1.0))).sum(axis=axis)


def mean_probs(samples: np.ndarray) -> np.ndarray:
    """(N, K, C) -> (N, C) expectation over samples."""
    return _check(samples).mean(axis=1)


def predictive_entropy(samples: np.ndarray) -> np.ndarray:
    """(N, K, C) -> (N,) entropy of the mean prediction (total uncertainty)."""
    return entropy(mean_probs(samples))


def expected_entropy(samples: np.ndarray) -> np.ndarray:
    """(N, K, C) -> (N,) mean entropy of the individual samples (aleatoric part)."""
    return entropy(_check(samples)).mean(axis=1)


def mutual_information(samples: np.ndarray) -> np.ndarray:
    """(N, K, C) -> (N,) BALD mutual information between prediction and weights (epistemic part)."""
    return np.maximum(predictive_entropy(samples) - expected_entropy(samples), 0.0)


def margin(samples: np.ndarray) -> np.ndarray:
    """(N, K, C) -> (N,) difference of the two largest mean probabilities (1 if C == 1)."""
    p = mean_probs(samples)
    if p.shape[1] < 2:
        return np.ones(p.shape[0])
    top2 = np.sort(p, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def least_confidence(samples: np.ndarray) -> np.ndarray:
    """(N, K, C) -> (N,) 1 - max mean probability."""
    return 1.0 - mean_probs(samples).max(axis=1)


def variation_ratio(samples: np.ndarray) -> np.ndarray:
    """(N, K, C) -> (N,) 1 - fraction of samples whose argmax is the modal class."""
    s = _check(samples)
    n, k, c = s.shape
    votes = s.argmax(axis=2)  # (N, K)
    counts = np.zeros((n, c), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(n), k), votes.ravel()), 1)
    return 1.0 - counts.max(axis=1) / k


def summarize(samples: np.ndarray) -> dict[str, np.ndarray]:
    """All per-document measures at once: {name: (N,)}."""
    return {
        "entropy": predictive_entropy(samples),
        "expected_entropy": expected_entropy(samples),
        "mutual_info": mutual_information(samples),
        "margin": margin(samples),
        "variation_ratio": variation_ratio(samples),
        "least_confidence": least_confidence(samples),
    }
