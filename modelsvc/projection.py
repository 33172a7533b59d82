"""The dashboard's 2-D map: a PCA projection of document vectors, stored as JSON-ready lists."""

from __future__ import annotations

from typing import Any

import numpy as np


def map_fit(embeddings: np.ndarray) -> dict[str, Any]:
    """PCA to 2-D of embeddings (N, H): {"mean": (H,), "components": (2, H)} as lists."""
    x = np.asarray(embeddings, dtype=np.float64)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    components = np.zeros((2, x.shape[1]))
    components[: min(2, len(vt))] = vt[:2]
    # Fix the sign so refits on similar data do not mirror the map.
    signs = np.sign(components[np.arange(2), np.abs(components).argmax(1)])
    components *= np.where(signs == 0, 1.0, signs)[:, None]
    return {"mean": mean.tolist(), "components": components.tolist()}


def map_project(projection: dict[str, Any], embeddings: np.ndarray) -> np.ndarray:
    """Embeddings (N, H) -> map points (N, 2) with a projection from ``map_fit``."""
    mean = np.asarray(projection["mean"], dtype=np.float64)
    components = np.asarray(projection["components"], dtype=np.float64)
    return (np.asarray(embeddings, dtype=np.float64) - mean) @ components.T
