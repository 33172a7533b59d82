import numpy as np
import pytest
import torch

from modelsvc.config import ModelConfig
from modelsvc.model import Classifier, build_head


def _classifier(n_members: int = 1, samples: int = 8) -> Classifier:
    config = ModelConfig(hidden_dim=8, n_members=n_members, samples=samples)
    torch.manual_seed(0)
    head = build_head(config, in_dim=6, n_classes=3)
    head.eval()
    return Classifier(config=config, label_names=["a", "b", "c"], encoder_id="x", head=head)


def test_k_samples_come_from_one_batched_head_call() -> None:
    clf = _classifier(samples=16)
    emb = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    before = clf.head.forward_calls
    logits = clf.sample_logits(emb)
    assert clf.head.forward_calls == before + 1
    assert logits.shape == (10, 16, 3)
    assert np.ptp(logits, axis=1).max() > 0  # the samples really differ (dropout active)


def test_sampling_is_reproducible_and_restores_eval_mode() -> None:
    clf = _classifier(n_members=2)
    emb = np.ones((4, 6), dtype=np.float32)
    np.testing.assert_array_equal(clf.sample_logits(emb), clf.sample_logits(emb))
    assert not clf.head.training


def test_eval_mode_restored_when_sampling_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    clf = _classifier()

    def boom(*args: object, **kwargs: object) -> torch.Tensor:
        assert clf.head.training  # dropout was on during sampling
        raise RuntimeError("boom")

    monkeypatch.setattr(clf.head, "forward", boom)
    with pytest.raises(RuntimeError, match="boom"):
        clf.sample_logits(np.ones((2, 6), dtype=np.float32))
    assert not clf.head.training


def test_ensemble_members_are_spread_over_samples() -> None:
    clf = _classifier(n_members=4, samples=8)
    clf.head.drop_in.p = clf.head.drop_hidden.p = 0.0
    logits = clf.sample_logits(np.ones((1, 6), dtype=np.float32))[0]  # (K, C)
    np.testing.assert_allclose(logits[:4], logits[4:], atol=1e-5)  # sample j uses member j % 4
    assert np.ptp(logits[:4], axis=0).max() > 0  # members differ
