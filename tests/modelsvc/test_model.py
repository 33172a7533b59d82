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


def test_sampling_is_reproducible_and_leaves_eval_mode() -> None:
    clf = _classifier(n_members=2)
    emb = np.ones((4, 6), dtype=np.float32)
    np.testing.assert_array_equal(clf.sample_logits(emb), clf.sample_logits(emb))
    assert not clf.head.training


def test_a_documents_samples_do_not_depend_on_its_batch() -> None:
    """Consistent masks: re-scoring a document alone, or in another batch, gives the same samples."""
    clf = _classifier(n_members=3, samples=9)
    emb = np.random.default_rng(1).normal(size=(12, 6)).astype(np.float32)
    together = clf.sample_logits(emb)
    alone = np.concatenate([clf.sample_logits(emb[i : i + 1]) for i in range(12)])
    reordered = clf.sample_logits(emb[::-1])[::-1]
    small_batches = clf.sample_logits(emb, batch_size=5)
    for other in (alone, reordered, small_batches):
        np.testing.assert_allclose(other, together, rtol=1e-5, atol=1e-6)


def test_consistent_samples_match_a_hand_computed_pass() -> None:
    """Sample j = member j % M with hidden mask j, written out one sample at a time."""
    clf = _classifier(n_members=2, samples=6)
    head = clf.head
    x = torch.as_tensor(np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32))
    _, masks = head.dropout_masks(6)
    kept = masks[masks > 0]
    np.testing.assert_allclose(kept.numpy(), 1.0 / (1.0 - head.drop_hidden.p), rtol=1e-6)  # inverted dropout
    assert 0 < kept.numel() < masks.numel()
    z = (x - head.feature_mean) / head.feature_std
    expected = torch.stack(
        [
            (torch.nn.functional.gelu(z @ head.w1[j % 2] + head.b1[j % 2]) * masks[j]) @ head.w2[j % 2] + head.b2[j % 2]
            for j in range(6)
        ],
        dim=1,
    )  # (B, k, C)
    with torch.no_grad():
        np.testing.assert_allclose(clf.sample_logits(x.numpy()), expected.numpy(), rtol=1e-5, atol=1e-5)


def test_input_dropout_samples_are_consistent_too() -> None:
    config = ModelConfig(hidden_dim=8, n_members=2, samples=4, input_dropout=0.2)
    torch.manual_seed(0)
    clf = Classifier(config=config, label_names=["a", "b", "c"], encoder_id="x", head=build_head(config, 6, 3).eval())
    emb = np.random.default_rng(3).normal(size=(5, 6)).astype(np.float32)
    logits = clf.sample_logits(emb)
    assert logits.shape == (5, 4, 3)
    np.testing.assert_allclose(clf.sample_logits(emb[2:3]), logits[2:3], rtol=1e-5, atol=1e-6)


def test_eval_mode_kept_when_sampling_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    clf = _classifier()
    clf.head.train()  # whatever mode the caller left it in is restored

    def boom(*args: object, **kwargs: object) -> torch.Tensor:
        assert not clf.head.training  # scoring never runs with training-mode dropout
        raise RuntimeError("boom")

    monkeypatch.setattr(clf.head, "sample", boom)
    with pytest.raises(RuntimeError, match="boom"):
        clf.sample_logits(np.ones((2, 6), dtype=np.float32))
    assert clf.head.training


def test_ensemble_members_are_spread_over_samples() -> None:
    clf = _classifier(n_members=4, samples=8)
    clf.head.drop_in.p = clf.head.drop_hidden.p = 0.0
    logits = clf.sample_logits(np.ones((1, 6), dtype=np.float32))[0]  # (K, C)
    np.testing.assert_allclose(logits[:4], logits[4:], atol=1e-5)  # sample j uses member j % 4
    assert np.ptp(logits[:4], axis=0).max() > 0  # members differ


def test_scoring_weights_follow_every_change_of_the_head() -> None:
    """The folded scoring weights are cached between calls; a training step, a loaded state or a new
    standardization must rebuild them (a stale cache would score with the previous model)."""
    clf = _classifier(n_members=2, samples=6)
    emb = np.random.default_rng(4).normal(size=(5, 6)).astype(np.float32)
    first = clf.sample_logits(emb)
    np.testing.assert_array_equal(clf.sample_logits(emb), first)  # served from the cache

    opt = torch.optim.SGD(clf.head.parameters(), lr=0.5)
    clf.head.train()
    clf.head(torch.as_tensor(emb), k=2).sum().backward()
    opt.step()
    clf.head.eval()
    stepped = clf.sample_logits(emb)
    assert not np.allclose(stepped, first)
    fresh = _classifier(n_members=2, samples=6)
    fresh.head.load_state_dict(clf.head.state_dict())
    np.testing.assert_allclose(fresh.sample_logits(emb), stepped, rtol=1e-5, atol=1e-6)

    clf.head.load_state_dict(_classifier(n_members=2, samples=6).head.state_dict())
    np.testing.assert_allclose(clf.sample_logits(emb), first, rtol=1e-5, atol=1e-6)
    clf.head.set_standardization(torch.as_tensor(emb))
    assert not np.allclose(clf.sample_logits(emb), first)


def test_the_head_scores_on_few_threads_and_restores_the_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    clf = _classifier()
    seen: list[int] = []
    sample = clf.head.sample

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        seen.append(torch.get_num_threads())
        return sample(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(clf.head, "sample", spy)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        clf.sample_logits(np.ones((3, 6), dtype=np.float32))
        assert seen == [1]
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
