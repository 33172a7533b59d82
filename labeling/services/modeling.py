"""The bridge to ``modelsvc``: encoder and classifier caches, /predict, attributions, locks.

Only ``labeling.services`` turn ORM rows into plain lists and arrays for ``modelsvc``. Loaded
encoders and classifiers are kept per process (a worker or web process scores many requests with
the same champion; reloading costs 1-2 s).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from labeling.labelspace import LabelSpace, label_space_for_model
from labeling.models import ModelVersion, Prediction, Project
from labeling.selectors.models import champion_get
from labeling.services import storage
from labeling.services.dispatch import TaskName, enqueue
from labeling.services.errors import NoChampionError
from modelsvc.artifacts import artifact_digest, load_classifier, save_classifier
from modelsvc.attribution import attribute
from modelsvc.config import PACKAGED_ENCODER, ModelConfig
from modelsvc.encoder import EmbeddingCache, TextEncoder
from modelsvc.inference import ScoreResult, score_multilabel_embeddings, score_texts
from modelsvc.model import Classifier
from modelsvc.multilabel import MultiLabelScore
from modelsvc.tuning import TunedLayers

_CLASSIFIERS_KEPT = 8
_lock = threading.Lock()
_classifiers: OrderedDict[tuple[int, str], Classifier] = OrderedDict()
_encoders: dict[tuple[ModelConfig, str | None, str], TextEncoder] = {}
_caches: dict[tuple[Path, bool], EmbeddingCache] = {}


def model_config() -> ModelConfig:
    """The encoder settings of this host: MODEL_ENCODER (empty = packaged), MODEL_DEVICE, MODEL_MC_SAMPLES."""
    return ModelConfig(
        encoder=settings.MODEL_ENCODER or PACKAGED_ENCODER,
        device=settings.MODEL_DEVICE,
        samples=settings.MODEL_MC_SAMPLES,
    )


def encoder_for(config: ModelConfig | None = None, tuned: TunedLayers | None = None) -> TextEncoder:
    """One TextEncoder per (config, tuned layers) per process (weights are loaded lazily, once).

    ``tuned``: a fine-tuned classifier's top layers (``Classifier.tuned``); the encoder then has the
    tuned identity, so it reads and writes its own rows of the embedding cache.
    """
    config = config or model_config()
    backend = str(settings.MODEL_ENCODER_BACKEND)
    key = (config, tuned.encoder_id if tuned is not None else None, backend)
    with _lock:
        encoder = _encoders.get(key)
        if encoder is None:
            encoder = _encoders[key] = TextEncoder(config, tuned=tuned, backend=backend)
        return encoder


def classifier_encoder(classifier: Classifier) -> TextEncoder:
    """The encoder a classifier scores with: this host's, with the classifier's tuned layers if any."""
    return encoder_for(classifier.config, classifier.tuned)


def embedding_cache_for(encoder_id: str, *, read_only: bool = False) -> EmbeddingCache:
    """The encoder's embedding cache, bounded by EMBEDDING_CACHE_MAX_BYTES; ``read_only``: a view that never writes."""
    path = storage.embedding_cache_path(encoder_id)
    with _lock:
        cache = _caches.get((path, read_only))
        if cache is None:
            cache = _caches[(path, read_only)] = EmbeddingCache(
                path, max_bytes=settings.EMBEDDING_CACHE_MAX_BYTES, read_only=read_only
            )
        return cache


def artifact_save(classifier: Classifier, name: str) -> tuple[str, str]:
    """Write ``classifier`` as artifact ``name`` and publish it: (its location, its digest to pin)."""
    local = save_classifier(classifier, storage.artifact_workdir(name))
    return storage.artifact_publish(local_dir=local, name=name), artifact_digest(local)


def classifier_for(model_version: ModelVersion) -> Classifier:
    """The model version's classifier, loaded once per process; runs on this host's MODEL_DEVICE."""
    key = (model_version.pk, model_version.artifact_path)
    with _lock:
        if key in _classifiers:
            _classifiers.move_to_end(key)
            return _classifiers[key]
    folder = storage.artifact_local(model_version.artifact_path)
    classifier = load_classifier(
        folder,
        expected_labels=model_version.label_map or None,
        expected_digest=model_version.artifact_digest or None,  # versions saved before pinning have none
        encoder=model_config().encoder,
    )
    # The artifact records where it was trained; scoring follows this host's device and sample count.
    classifier.config = dataclasses.replace(
        classifier.config, device=settings.MODEL_DEVICE, samples=settings.MODEL_MC_SAMPLES
    )
    with _lock:
        _classifiers[key] = classifier
        while len(_classifiers) > _CLASSIFIERS_KEPT:
            _classifiers.popitem(last=False)
    return classifier


def classifier_score(
    classifier: Classifier, texts: Sequence[str], *, return_samples: bool = False, cache_new: bool = True
) -> ScoreResult | MultiLabelScore:
    """Score texts with the embedding cache of the classifier's encoder (``score_texts`` refuses an encoder
    whose identity is not the model's: "encoder mismatch"). ``cache_new=False``: read the cache, add nothing.

    A multi-label (sigmoid) classifier gives a ``MultiLabelScore`` (per-label probabilities, sets, uncertainty).
    """
    encoder = classifier_encoder(classifier)
    cache = embedding_cache_for(encoder.encoder_id, read_only=not cache_new)
    if classifier.multi_label:
        embeddings = encoder.encode(list(texts), cache=cache)
        return score_multilabel_embeddings(classifier, embeddings, return_samples=return_samples)
    return score_texts(classifier, list(texts), cache=cache, encoder=encoder, return_samples=return_samples)


def recommendation(project: Project, confidence: float) -> str:
    if confidence >= project.auto_accept_threshold:
        return "auto_accept"
    if confidence >= project.review_threshold:
        return "review"
    return "escalate"


def predict_texts(*, project: Project, texts: list[str]) -> list[dict[str, Any]]:
    """The champion's calibrated predictions for ad-hoc texts (the API's /predict)."""
    champion = champion_get(project_id=project.pk)
    if champion is None:
        raise NoChampionError(
            f"project {project.name!r} has no trained model yet; label more documents first"
        )
    classifier = classifier_for(champion)
    # Ad-hoc texts are not documents: they would only fill the cache for the pool's vectors.
    result = classifier_score(classifier, texts, cache_new=False)
    space = label_space_for_model(champion, task_type=project.task_type)
    if isinstance(result, MultiLabelScore):
        return _predict_sets(project, champion, space, result)
    out = []
    for i, fields in enumerate(space.prediction_fields(result.probs)):
        confidence = fields.confidence
        out.append(
            {
                "label": fields.predicted_label,
                "confidence": confidence,
                "probabilities": space.probabilities(fields.probabilities),
                "entropy": float(result.entropy[i]),
                "expected_entropy": float(result.expected_entropy[i]),
                "mutual_info": float(result.mutual_info[i]),
                "margin": float(result.margin[i]),
                "recommendation": recommendation(project, confidence),
                "model_version": champion.version,
            }
        )
    return out


def _predict_sets(
    project: Project, champion: ModelVersion, space: LabelSpace, result: MultiLabelScore
) -> list[dict[str, Any]]:
    """/predict for a multi-label champion: the predicted set, calibrated per-label probabilities, and the
    recommendation on the probability that the whole set is right (``confidence``)."""
    out = []
    thresholds = champion.thresholds or classifier_for(champion).thresholds
    for i, fields in enumerate(space.prediction_fields(result.probs, thresholds)):
        out.append(
            {
                "label": fields.predicted_label,
                "labels": list(space.parse(fields.predicted_label)),
                "confidence": fields.confidence,
                "probabilities": space.probabilities(fields.probabilities),
                "thresholds": space.probabilities(list(thresholds or [])),
                "entropy": float(result.entropy[i].sum()),
                "expected_entropy": float(result.expected_entropy[i].sum()),
                "mutual_info": float(result.score[i]),
                "mutual_info_per_label": space.probabilities([float(v) for v in result.mutual_info[i]]),
                "margin": float(result.margin()[i]),
                "recommendation": recommendation(project, fields.confidence),
                "model_version": champion.version,
            }
        )
    return out


def prediction_attributions_request(*, prediction: Prediction) -> list[list[Any]] | None:
    """The stored highlights, or None after asking a worker to compute them (one message a minute per prediction).

    Integrated gradients run the encoder dozens of times per document: never inside a web request.
    """
    if prediction.attributions is not None:
        return prediction.attributions
    enqueue(TaskName.ATTRIBUTE, args=(prediction.pk,), coalesce_s=60)
    return None


def prediction_attributions(*, prediction: Prediction) -> list[list[Any]]:
    """Token attributions [[token, score], ...] for the predicted label, computed once and stored."""
    if prediction.attributions is not None:
        return prediction.attributions
    classifier = classifier_for(prediction.model_version)
    pairs = attribute(classifier, prediction.document.text, encoder=classifier_encoder(classifier))
    tokens = [[str(word), float(score)] for word, score in pairs]
    Prediction.objects.filter(pk=prediction.pk).update(attributions=tokens)
    prediction.attributions = tokens
    return tokens


# --- locks ------------------------------------------------------------------------------------
# PostgreSQL session advisory locks: held by a live connection, released by the server when the
# process holding them dies. That is what tells a crashed run from a running one, with no broker
# inspection. On SQLite (the single-worker demo) they are no-ops.

LOCK_SCORING = 7301  # (LOCK_SCORING, project id): one scorer per project
LOCK_TRAINING = 7302  # (LOCK_TRAINING, run id): held while a run executes
LOCK_IMPORT = 7304  # (LOCK_IMPORT, import job id): held while an import executes
# A re-score split over workers: each slice task holds (LOCK_SCORING, project id) *shared*, so slices run
# side by side while a whole-project scorer (exclusive) waits, and (-model version id, slice index)
# exclusively, so a redelivered slice message never scores the slice twice at once. The negative first
# key keeps these apart from the namespaced locks above.


def _postgres() -> bool:
    return connection.vendor == "postgresql"


def lock_try(namespace: int, key: int, *, shared: bool = False) -> bool:
    if not _postgres():
        return True
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_try_advisory_lock{'_shared' if shared else ''}(%s, %s)", [namespace, key])
        return bool(cursor.fetchone()[0])


def lock_release(namespace: int, key: int, *, shared: bool = False) -> None:
    if not _postgres():
        return
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT pg_advisory_unlock{'_shared' if shared else ''}(%s, %s)", [namespace, key])


def lock_is_free(namespace: int, key: int) -> bool:
    """True when no live session holds the lock (probe: take it and let go at once)."""
    if not _postgres():
        return True
    if lock_try(namespace, key):
        lock_release(namespace, key)
        return True
    return False


@contextlib.contextmanager
def lock_held(namespace: int, key: int, *, shared: bool = False) -> Iterator[bool]:
    """Yield whether the lock was taken (``shared``: alongside other shared holders); release it on the way out."""
    got = lock_try(namespace, key, shared=shared)
    try:
        yield got
    finally:
        if got:
            lock_release(namespace, key, shared=shared)
