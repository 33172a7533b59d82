"""Fixtures for modelsvc: a tiny random BERT built in-process, with the packaged WordPiece vocab."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from modelsvc.config import ModelConfig, TrainConfig  # noqa: E402
from modelsvc.encoder import TextEncoder, packaged_encoder_path  # noqa: E402
from modelsvc.fitting import TrainResult  # noqa: E402
from modelsvc.training import train  # noqa: E402

POSITIVE = ["great", "wonderful", "superb", "delightful", "brilliant", "moving", "charming", "fresh"]
NEGATIVE = ["awful", "dull", "boring", "tedious", "clumsy", "stale", "lifeless", "bland"]


def toy_corpus(n: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """Two separable classes of short texts built from sentiment words."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        pos = i % 2 == 0
        words = rng.choice(POSITIVE if pos else NEGATIVE, size=4)
        texts.append(f"the film was {' and '.join(words)} {i}")
        labels.append("pos" if pos else "neg")
    return texts, labels


def assert_loaded_scores_identically(saved: Any, loaded: Any) -> None:
    """A classifier loaded back from its artifact scores toy texts (and one of unseen words) exactly as saved."""
    from modelsvc.inference import score_texts

    encoder = TextEncoder(saved.config)
    texts, _ = toy_corpus(30, seed=9)
    texts.append("a text with words the vocabulary never saw: zyzzyva")
    before = score_texts(saved, texts, encoder=encoder, return_samples=True)
    after = score_texts(loaded, texts, encoder=encoder, return_samples=True)
    np.testing.assert_array_equal(after.probs, before.probs)
    np.testing.assert_array_equal(after.mutual_info, before.mutual_info)


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(packaged_encoder_path() / name, folder / name)
    return folder


def tiny_model_config(folder: Path) -> ModelConfig:
    """Model settings sized for the tiny encoder: short windows, 8 samples, fp32, a 16-wide head."""
    return ModelConfig(
        encoder=str(folder), max_length=16, stride=4, samples=8, precision="fp32", batch_tokens=256, hidden_dim=16
    )


@pytest.fixture()
def tiny_config(tiny_encoder_dir: Path) -> ModelConfig:
    return tiny_model_config(tiny_encoder_dir)


@pytest.fixture()
def tiny_encoder(tiny_config: ModelConfig) -> TextEncoder:
    return TextEncoder(tiny_config)


@pytest.fixture(scope="session")
def tiny_trained(tiny_encoder_dir: Path) -> TrainResult:
    config = tiny_model_config(tiny_encoder_dir)
    texts, labels = toy_corpus(60)
    return train(
        texts,
        labels,
        label_names=["neg", "pos"],
        model_config=config,
        train_config=TrainConfig(seed=0, max_epochs=120),
    )
