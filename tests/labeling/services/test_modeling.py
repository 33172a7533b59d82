"""The service's bridge to modelsvc scores a fine-tuned classifier with its own tuned encoder."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from labeling.services import modeling
from modelsvc import finetune
from modelsvc.config import TrainConfig
from modelsvc.training import train
from tests.modelsvc.conftest import tiny_encoder_dir, tiny_model_config, toy_corpus  # noqa: F401 (the fixture)


@pytest.fixture
def cache_dir(tmp_path: Path, settings) -> Path:
    settings.EMBEDDING_CACHE_DIR = tmp_path
    return tmp_path


def test_a_tuned_champion_scores_through_its_tuned_layers_and_its_own_cache_rows(
    tiny_encoder_dir,  # noqa: F811
    cache_dir,
    monkeypatch,
):
    config = tiny_model_config(tiny_encoder_dir)
    texts, labels = toy_corpus(60)
    frozen = train(
        texts, labels, label_names=["neg", "pos"], model_config=config, train_config=TrainConfig(seed=0, max_epochs=20)
    ).classifier
    # The toy classes are separable, so whether a joint epoch beats the frozen probe is a coin toss:
    # let the stopping rule see a falling validation loss (the gradient steps are real).
    losses = itertools.count()
    monkeypatch.setattr(finetune, "_val_loss", lambda *args: 1.0 - 0.1 * next(losses))
    tuned = train(
        texts,
        labels,
        label_names=["neg", "pos"],
        model_config=config,
        train_config=TrainConfig(seed=0, max_epochs=20, fine_tune="top1", fine_tune_epochs=1),
    ).classifier
    assert tuned.tuned is not None
    encoder = modeling.classifier_encoder(tuned)
    assert encoder.encoder_id == tuned.encoder_id != frozen.encoder_id
    assert modeling.classifier_encoder(frozen).encoder_id == frozen.encoder_id
    sample = texts[:6]
    first = modeling.classifier_score(tuned, sample)
    calls = encoder.forward_calls
    again = modeling.classifier_score(tuned, sample)  # re-scoring reads the tuned identity's cache rows
    assert encoder.forward_calls == calls
    np.testing.assert_array_equal(again.probs, first.probs)
    assert modeling.classifier_score(frozen, sample).probs.shape == first.probs.shape


@pytest.mark.django_db
def test_a_model_version_loads_only_the_artifact_it_pinned(tiny_encoder_dir, settings) -> None:  # noqa: F811
    from modelsvc.artifacts import ArtifactError
    from tests.factories import ModelVersionFactory

    config = tiny_model_config(tiny_encoder_dir)
    settings.MODEL_ENCODER = config.encoder
    texts, labels = toy_corpus(30)
    result = train(texts, labels, label_names=["neg", "pos"], model_config=config,
                   train_config=TrainConfig(seed=0, max_epochs=20))
    location, digest = modeling.artifact_save(result.classifier, "pinned")
    version = ModelVersionFactory(artifact_path=location, artifact_digest=digest, label_map=["neg", "pos"])
    assert modeling.classifier_for(version).label_names == ["neg", "pos"]
    (Path(location) / "classifier.json").write_text((Path(location) / "classifier.json").read_text() + " ")
    version.pk = None  # the process keeps loaded classifiers: a fresh key loads from disk again
    version.version += 1
    version.save()
    with pytest.raises(ArtifactError, match="tampered"):
        modeling.classifier_for(version)
