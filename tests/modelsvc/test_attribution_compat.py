import numpy as np
import pytest
import torch

from modelsvc.attribution import attribute, target_log_odds
from modelsvc.compat import BayesianExpectationTransformerLayer
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


def _old_config() -> dict[str, float]:
    return {"d_model": 16, "n_heads": 2, "dropout": 0.2, "k_permutations": 8}


def test_compat_layer_accepts_old_config_and_returns_real_uncertainty() -> None:
    torch.manual_seed(0)
    layer = BayesianExpectationTransformerLayer(_old_config()).eval()
    x = torch.randn(3, 5, 16)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    out = layer(x, attention_mask=mask)
    assert out["hidden_states"].shape == (3, 5, 16)
    mi = out["epistemic_uncertainty"]
    assert mi.shape == (3,) and (mi >= 0).all() and mi.max() > 0
    assert len(set(mi.tolist())) == 3  # not a constant
    assert out["sample_probs"].shape == (3, 8, 2)
    assert layer.stochastic_calls == 1  # k samples in one batched call
    assert not layer.training and not layer.ff.training  # eval restored


def test_compat_layer_validates_old_keys() -> None:
    with pytest.raises(ValueError, match="multiple of n_heads"):
        BayesianExpectationTransformerLayer({"d_model": 15, "n_heads": 2, "dropout": 0.1, "k_permutations": 4})
    with pytest.raises(ValueError, match="k_permutations"):
        BayesianExpectationTransformerLayer({**_old_config(), "k_permutations": 1})
