"""Batched scoring: encoder once per document (or from the cache), then k head samples in one call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelsvc import uncertainty as U
from modelsvc.calibration import apply_error_mapping, tempered_samples
from modelsvc.encoder import EmbeddingCache, ProgressFn, TextEncoder
from modelsvc.model import Classifier
from modelsvc.multilabel import MultiLabelScore, summarize_multilabel


@dataclass
class ScoreResult:
    """Per-document outputs; N documents, K samples, C classes, H embedding width."""

    probs: np.ndarray  # (N, C) calibrated mean probabilities
    probs_uncalibrated: np.ndarray  # (N, C) mean probabilities at T = 1
    samples: np.ndarray | None  # (N, K, C) calibrated sample probabilities, if requested
    predicted: np.ndarray  # (N,) int class index
    confidence: np.ndarray  # (N,) calibrated max mean probability
    entropy: np.ndarray  # (N,) predictive entropy (total)
    expected_entropy: np.ndarray  # (N,) aleatoric
    mutual_info: np.ndarray  # (N,) epistemic (BALD)
    margin: np.ndarray  # (N,) top1 - top2 of the calibrated mean
    variation_ratio: np.ndarray  # (N,)
    embeddings: np.ndarray  # (N, H) the encoder's vectors (without a hybrid model's TF-IDF block)
    error_probability: np.ndarray | None = None  # (N,) when the classifier has an error mapping

    def uncertainty(self) -> dict[str, np.ndarray]:
        return {
            "entropy": self.entropy,
            "expected_entropy": self.expected_entropy,
            "mutual_info": self.mutual_info,
            "margin": self.margin,
            "variation_ratio": self.variation_ratio,
            "least_confidence": 1.0 - self.confidence,
        }

    def records(self, label_names: Sequence[str]) -> list[dict[str, Any]]:
        """One JSON-ready dict per document (the CLI's ``score`` output)."""
        out = []
        for i in range(len(self.predicted)):
            rec: dict[str, Any] = {
                "probabilities": {name: float(p) for name, p in zip(label_names, self.probs[i], strict=True)},
                "label": label_names[int(self.predicted[i])],
                "confidence": float(self.confidence[i]),
                "entropy": float(self.entropy[i]),
                "expected_entropy": float(self.expected_entropy[i]),
                "mutual_info": float(self.mutual_info[i]),
                "margin": float(self.margin[i]),
                "variation_ratio": float(self.variation_ratio[i]),
            }
            if self.error_probability is not None:
                rec["error_probability"] = float(self.error_probability[i])
            out.append(rec)
        return out


def encoder_for(classifier: Classifier) -> TextEncoder:
    """A TextEncoder matching the classifier's config (and tuned layers); checks the encoder identity."""
    encoder = TextEncoder(classifier.config, tuned=classifier.tuned)
    if encoder.encoder_id != classifier.encoder_id:
        raise ValueError(
            f"encoder mismatch: classifier was trained on {classifier.encoder_id}, "
            f"but {classifier.config.encoder} resolves to {encoder.encoder_id}"
        )
    return encoder


def score_embeddings(
    classifier: Classifier,
    embeddings: np.ndarray,
    *,
    return_samples: bool = False,
    k: int | None = None,
    encoder_embeddings: np.ndarray | None = None,
) -> ScoreResult:
    """Score head inputs (N, H): k MC samples of the head in one batched call per chunk.

    ``embeddings`` are what the head reads: the encoder's vectors, or for a hybrid classifier
    ``classifier.head_inputs(texts, vectors)`` (``score_texts`` does that). ``encoder_embeddings``
    (N, H'), when given, are kept in the result instead (the encoder's vectors, which the map projects).
    """
    logits = classifier.sample_logits(embeddings, k=k)  # (N, K, C)
    return summarize_logits(
        logits,
        temperature=classifier.temperature,
        error_mapping=classifier.calibration.get("error_mapping"),
        embeddings=embeddings if encoder_embeddings is None else encoder_embeddings,
        return_samples=return_samples,
    )


def score_multilabel_embeddings(
    classifier: Classifier, embeddings: np.ndarray, *, return_samples: bool = False, k: int | None = None
) -> MultiLabelScore:
    """Score document vectors (N, H) with a multi-label (sigmoid) classifier: per-label temperatures,
    thresholds and uncertainty (``modelsvc.multilabel``)."""
    if not classifier.multi_label:
        raise ValueError("score_multilabel_embeddings needs a classifier with sigmoid outputs")
    return summarize_multilabel(
        classifier.sample_logits(embeddings, k=k),
        temperatures=classifier.label_temperatures,
        thresholds=classifier.thresholds,
        embeddings=embeddings,
        return_samples=return_samples,
    )


def summarize_logits(
    logits: np.ndarray,
    *,
    temperature: float,
    error_mapping: dict[str, Any] | None,
    embeddings: np.ndarray,
    return_samples: bool = False,
) -> ScoreResult:
    """Sample logits (N, K, C) -> calibrated ScoreResult (also used on out-of-fold logits)."""
    samples = tempered_samples(logits, temperature)  # (N, K, C)
    probs_uncal = tempered_samples(logits, 1.0).mean(1)
    summary = U.summarize(samples)
    probs = samples.mean(1)
    return ScoreResult(
        probs=probs,
        probs_uncalibrated=probs_uncal,
        samples=samples if return_samples else None,
        predicted=probs.argmax(1),
        confidence=probs.max(1),
        entropy=summary["entropy"],
        expected_entropy=summary["expected_entropy"],
        mutual_info=summary["mutual_info"],
        margin=summary["margin"],
        variation_ratio=summary["variation_ratio"],
        embeddings=np.asarray(embeddings, dtype=np.float32),
        error_probability=apply_error_mapping(error_mapping, summary["entropy"]) if error_mapping else None,
    )


def score_texts(
    classifier: Classifier,
    texts: Sequence[str],
    *,
    cache: EmbeddingCache | None = None,
    encoder: TextEncoder | None = None,
    return_samples: bool = False,
    progress: ProgressFn | None = None,
) -> ScoreResult:
    """Encode ``texts`` (cache first) and score them; see ``score_embeddings``.

    A given ``encoder`` must have the classifier's encoder identity (a frozen encoder never feeds a
    fine-tuned head, nor the reverse): ValueError("encoder mismatch ...") otherwise.
    """
    if encoder is None:
        encoder = encoder_for(classifier)  # checks the identity itself
    elif encoder.encoder_id != classifier.encoder_id:
        raise ValueError(
            f"encoder mismatch: classifier was trained on {classifier.encoder_id}, the encoder is {encoder.encoder_id}"
        )
    emb = encoder.encode(texts, cache=cache, progress=progress)
    inputs = classifier.head_inputs(texts, emb)  # the same TF-IDF block as in training when hybrid
    return score_embeddings(classifier, inputs, return_samples=return_samples, encoder_embeddings=emb)
