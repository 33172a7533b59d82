"""Word highlights by integrated gradients (IG) w.r.t. the input word embeddings.

The path runs through the encoder (fp32, eval mode), the same window pooling as ``encode`` and the
head's deterministic mean logits (dropout off, members averaged), to the calibrated log-odds of the
target class, log p_t - log(1 - p_t): the probability itself saturates at 1.0 for a confident
prediction (its gradient is then exactly 0 in fp32 and every word would score 0), the log-odds do
not. Baseline: [PAD] embeddings for content tokens, special tokens kept. Midpoint
Riemann sum with ``steps`` points, batched; token scores are summed into whitespace-separated
words, averaged where overlapping windows see the same token.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from modelsvc.encoder import TextEncoder, pooled_forward
from modelsvc.features import HybridFeatures, SparsePath
from modelsvc.inference import encoder_for
from modelsvc.model import Classifier, eval_mode


def _word_spans(text: str) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, ch in enumerate(text):
        if ch.isspace():
            if start is not None:
                spans.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(text)))
    return spans


def target_log_odds(logits: torch.Tensor, target: int) -> torch.Tensor:
    """log p_t - log(1 - p_t) of softmax(logits) (B, C) -> (B,), computed without forming p (it saturates)."""
    others = torch.cat([logits[:, :target], logits[:, target + 1 :]], dim=1)
    return logits[:, target] - torch.logsumexp(others, dim=1)


def _chunks(n: int, size: int) -> Iterator[slice]:
    for s in range(0, n, size):
        yield slice(s, min(n, s + size))


def attribute(
    classifier: Classifier,
    text: str,
    *,
    encoder: TextEncoder | None = None,
    target: int | None = None,
    steps: int = 20,
) -> list[tuple[str, float]]:
    """[(word, score)] in text order; positive scores push towards ``target`` (default: predicted).

    Scores sum (approximately, IG completeness) to the target's calibrated log-odds on the text minus
    those on the baseline.
    """
    if steps < 1:
        raise ValueError("steps must be >= 1")
    encoder = encoder or encoder_for(classifier)
    cfg = encoder.config
    tok, model = encoder.tokenizer, encoder.model
    enc = tok(
        [text],
        truncation=True,
        max_length=cfg.max_length,
        stride=cfg.stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        padding=True,
        return_tensors="pt",
    )
    ids, mask = enc["input_ids"], enc["attention_mask"]  # (W, T)
    special = enc["special_tokens_mask"].bool() | (mask == 0)  # (W, T)
    offsets = enc["offset_mapping"]  # (W, T, 2)
    n_win, width = ids.shape
    weights = mask.sum(1).float()  # tokens per window, (W,)
    weights = weights / weights.sum()
    embed = model.get_input_embeddings()  # type: ignore[operator]
    head = classifier.head
    # A hybrid head also reads the text's TF-IDF block, and a sparse path adds its offsets to the logits:
    # both held at their values, so the scores explain the encoder's share of the log-odds (the n-grams
    # are not a function of the token embeddings).
    features = classifier.features
    block = torch.as_tensor(features.transform([text])) if isinstance(features, HybridFeatures) else None  # (1, R)
    offset = torch.as_tensor(features.offsets([text])) if isinstance(features, SparsePath) else None  # (1, C)

    def head_logits(doc: torch.Tensor) -> torch.Tensor:  # (S, H) -> mean logits (S, C)
        x = doc if block is None else torch.cat([doc, block.expand(doc.shape[0], -1)], 1)
        logits = head.mean_logits(x)
        return logits if offset is None else logits + offset

    with torch.no_grad():
        inp = embed(ids).float()  # (W, T, E)
        pad = embed(torch.full_like(ids, tok.pad_token_id or 0)).float()
        base = torch.where(special.unsqueeze(-1), inp, pad)  # (W, T, E)
        if target is None:
            pooled = pooled_forward(model, mask, cfg.pooling, inputs_embeds=inp)
            target = int(head_logits((weights[:, None] * pooled).sum(0, keepdim=True)).argmax())
    alphas = (torch.arange(steps, dtype=torch.float32) + 0.5) / steps
    grads = torch.zeros_like(inp)
    per_batch = max(1, cfg.batch_tokens // max(1, n_win * width))
    with torch.enable_grad(), eval_mode(head):
        for sl in _chunks(steps, per_batch):
            a = alphas[sl].view(-1, 1, 1, 1)  # (S, 1, 1, 1)
            x = (base.unsqueeze(0) + a * (inp - base).unsqueeze(0)).detach()  # (S, W, T, E)
            x.requires_grad_(True)
            s = x.shape[0]
            m = mask.repeat(s, 1)  # (S*W, T)
            flat = x.reshape(s * n_win, width, -1)
            pooled = pooled_forward(model, m, cfg.pooling, inputs_embeds=flat).view(s, n_win, -1)  # (S, W, H)
            doc = (weights.view(1, -1, 1) * pooled).sum(1)  # (S, H)
            log_odds = target_log_odds(head_logits(doc) / classifier.temperature, target)  # (S,)
            (g,) = torch.autograd.grad(log_odds.sum(), x)
            grads += g.sum(0)
    scores = ((inp - base) * grads / steps).sum(-1)  # (W, T)
    by_token: dict[tuple[int, int], list[float]] = {}
    for w in range(n_win):
        for t in range(width):
            if special[w, t]:
                continue
            span = (int(offsets[w, t, 0]), int(offsets[w, t, 1]))
            by_token.setdefault(span, []).append(float(scores[w, t]))
    words = _word_spans(text)
    word_scores = np.zeros(len(words))
    starts = np.array([s for s, _ in words])
    for (start, _end), vals in by_token.items():
        wi = int(np.searchsorted(starts, start, side="right")) - 1
        if wi >= 0:
            word_scores[wi] += float(np.mean(vals))
    return [(text[s:e], float(v)) for (s, e), v in zip(words, word_scores, strict=True)]
