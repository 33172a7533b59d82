"""The run's likely-wrong labels: the top share, most suspect first, never a reviewer-decided document."""

from __future__ import annotations

import numpy as np

from labeling.services.training.label_issues import label_issues_rank


def test_top_share_skips_decided_documents_and_keeps_the_budget() -> None:
    # documents 10..19, all labeled "a"; the model doubts the later ones more
    probs_a = np.linspace(0.9, 0.05, 10)
    probs = np.stack([probs_a, 1 - probs_a], axis=1)
    ids = list(range(10, 20))
    issues = label_issues_rank(
        document_ids=ids, labels=["a"] * 10, label_names=["a", "b"], oof_probs=probs, share=0.2
    )
    assert issues["document_ids"] == [19, 18] and issues["n_ranked"] == 10
    assert issues["scores"] == sorted(issues["scores"])
    again = label_issues_rank(
        document_ids=ids, labels=["a"] * 10, label_names=["a", "b"], oof_probs=probs, share=0.2, decided={19, 3}
    )
    assert again["document_ids"] == [18, 17] and again["n_decided"] == 1
