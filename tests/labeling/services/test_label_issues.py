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


def test_flags_still_waiting_for_review_use_up_the_share_first() -> None:
    # 18 labels ranked, 2 more held back by earlier flags: 20 % of 20 is 4, 2 of them already pending.
    probs_a = np.linspace(0.9, 0.05, 18)
    probs = np.stack([probs_a, 1 - probs_a], axis=1)
    ids = list(range(18))
    issues = label_issues_rank(
        document_ids=ids, labels=["a"] * 18, label_names=["a", "b"], oof_probs=probs, share=0.2, pending=2
    )
    assert issues["document_ids"] == [17, 16] and issues["n_pending"] == 2
    full = label_issues_rank(
        document_ids=ids, labels=["a"] * 18, label_names=["a", "b"], oof_probs=probs, share=0.2, pending=5
    )
    assert full["document_ids"] == []  # the backlog is over the share already: nothing new is flagged


def test_only_labels_cleanlab_counts_as_issues_are_flagged_however_large_the_share() -> None:
    # 20 labels the model agrees with (some more surely than others), and 2 it contradicts outright.
    labels = ["a"] * 10 + ["b"] * 10
    sure = np.linspace(0.95, 0.75, 10)
    probs = np.array([[p, 1 - p] for p in sure] + [[1 - p, p] for p in sure])
    probs[3], probs[14] = [0.05, 0.95], [0.97, 0.03]  # labeled a and b, the model says b and a
    issues = label_issues_rank(
        document_ids=list(range(20)), labels=labels, label_names=["a", "b"], oof_probs=probs, share=0.5
    )
    assert issues["n_issues"] == 2 and sorted(issues["document_ids"]) == [3, 14]
