import numpy as np
import torch

from modelsvc.attribution import attribute, target_log_odds
from modelsvc.encoder import TextEncoder
from modelsvc.fitting import TrainResult


def test_attribution_returns_scored_words_in_order(tiny_trained: TrainResult, tiny_encoder: TextEncoder) -> None:
    text = "the film was wonderful and superb"
    out = attribute(tiny_trained.classifier, text, encoder=tiny_encoder, steps=16)
    assert [w for w, _ in out] == text.split()
    scores = np.array([s for _, s in out])
    assert np.isfinite(scores).all() and np.abs(scores).sum() > 0
    assert not tiny_trained.classifier.head.training


def test_attribution_covers_long_documents(tiny_trained: TrainResult, tiny_encoder: TextEncoder) -> None:
    text = " ".join(["dull"] * 10 + ["superb"] * 10)  # several windows at max_length 16
    out = attribute(tiny_trained.classifier, text, encoder=tiny_encoder, steps=8)
    assert len(out) == 20 and all(s != 0.0 for _, s in out)


def test_target_log_odds_by_hand_and_without_saturation() -> None:
    logits = torch.tensor([[2.0, 0.0, 1.0], [40.0, 0.0, 0.0]])
    got = target_log_odds(logits, 0)
    # p0 / (1 - p0) = e^2 / (e^0 + e^1); the second row's p0 is 1.0 in fp32, its log-odds are not
    np.testing.assert_allclose(got.numpy(), [2.0 - np.log(1.0 + np.e), 40.0 - np.log(2.0)], rtol=1e-6)
    x = logits.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(target_log_odds(x, 0).sum(), x)
    assert g[1, 0] == 1.0  # the probability's gradient there is exactly 0
