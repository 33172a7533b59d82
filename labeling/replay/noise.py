"""The replay's label-noise figures, measured after each retrain, then the simulated review.

Per round (``team_round``): how many pool labels are wrong (final label != gold) and how many of them
the noise loop holds back from training (flagged, not yet reviewed; only where the project holds flagged
labels back, ``Project.noise_hold_flagged``, the replay's ``--hold-flagged``),
how many of them the newest run flagged (the top ``Project.noise_review_share`` of its labels:
precision and recall of the flags), the reviews spent and how many changed a label, and, with holdout
overlap, the agreement figures of the simulated annotators with their intervals beside the simulation's
true value (``modelsvc.agreement.flip_noise_truth``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from labeling.models import Annotation, Document, ModelVersion, Project, Split
from labeling.replay.team import TeamState, review_flagged
from labeling.selectors.consensus import flagged_pending
from labeling.selectors.models import majority_labels
from labeling.services.training.label_issues import label_issues_for_review
from modelsvc.agreement import agreement_report, flip_noise_truth
from modelsvc.noise import flag_precision_recall

#: Bootstrap replicates of the replay's agreement intervals (per round; the figures are cheap at this size).
AGREEMENT_BOOT = 500


def team_round(state: TeamState, project: Project) -> dict[str, Any]:
    """Measure this round's noise figures, then review the newest run's flags; JSON-ready fields."""
    labeled = majority_labels(project=project, split=Split.POOL, hold_flagged=False)
    gold = dict(Document.objects.filter(project=project, split=Split.POOL).values_list("id", "gold_label"))
    wrong_ids = {doc_id for doc_id, _, label in labeled if label != gold[doc_id]}
    held = flagged_pending(project=project, split=Split.POOL)
    out: dict[str, Any] = {
        "pool_labels": len(labeled),
        "wrong_labels": len(wrong_ids),
        "flags_waiting": len(held),
        # flagged labels train until reviewed unless the project holds them back
        "held_back": len(held) if project.noise_hold_flagged else 0,
        "held_back_wrong": len(held & wrong_ids) if project.noise_hold_flagged else 0,
    }
    # The issue's "flagged top 10 %": every label under suspicion now (open noise flags, at most the
    # project's share of the labels), against every wrong pool label.
    open_precision, open_recall = open_flags_precision_recall(held, wrong_ids)
    out |= {"open_flagged_wrong": len(held & wrong_ids), "open_precision": open_precision, "open_recall": open_recall}
    newest = ModelVersion.objects.filter(project=project).exclude(artifact_path="").order_by("-version").first()
    issues = (newest.metrics or {}).get("label_issues") if newest else None
    if issues:
        flagged = [doc_id for doc_id, _ in label_issues_for_review(model_version=newest)]
        # The run ranked the final labels less the flags still waiting before it (held back or not): no
        # label arrived since, and its own flags were opened after it ranked them.
        held_before = held - set(flagged)
        ranked = [doc_id for doc_id, _, _ in labeled if doc_id not in held_before]
        wrong = np.array([doc_id in wrong_ids for doc_id in ranked])
        position = {doc_id: i for i, doc_id in enumerate(ranked)}
        hits = np.array([position[d] for d in flagged if d in position], dtype=np.int64)
        precision, recall = flag_precision_recall(hits, wrong)
        out |= {"flagged": len(flagged), "flag_precision": precision, "flag_recall": recall}
        out["n_issues"] = issues.get("n_issues")
        # The review budget follows all pool labels (held-back ones included), not the run's ranked count.
        review_flagged(state, project, flagged, len(labeled))
    out |= {"reviews": state.reviews, "reviews_changed": state.reviews_changed}
    if state.policy.holdout_overlap > 1:
        out |= holdout_agreement(state, project)
    return out


def open_flags_precision_recall(open_flags: set[int], wrong_ids: set[int]) -> tuple[float, float]:
    """Share of the open flags that are wrong, and share of the wrong labels under an open flag."""
    hits = len(open_flags & wrong_ids)
    return (hits / len(open_flags) if open_flags else 0.0), (hits / len(wrong_ids) if wrong_ids else 1.0)


def holdout_agreement(state: TeamState, project: Project) -> dict[str, Any]:
    """Alpha, Fleiss' kappa and the first pair's Cohen's kappa on the overlapped holdout, with the truth.

    Columns are answer slots (first, second ... label a document got), not people: every simulated
    annotator shares the flip rate, so the slots are exchangeable raters.
    """
    names = state.label_names
    answers: dict[int, list[float]] = defaultdict(list)
    rows = Annotation.objects.filter(project=project, document__split=Split.HOLDOUT).order_by("id")
    for doc_id, label in rows.values_list("document_id", "label"):
        answers[doc_id].append(float(names.index(label)))
    k = state.policy.holdout_overlap
    ratings = np.array([(a + [np.nan] * k)[:k] for a in answers.values()], dtype=np.float64).reshape(-1, k)
    report = agreement_report(ratings, len(names), seed=0, n_boot=AGREEMENT_BOOT)
    out: dict[str, Any] = {
        "holdout_rated": int(((~np.isnan(ratings)).sum(axis=1) >= 2).sum()),
        "alpha": report.alpha.as_dict(),
        "fleiss_kappa": report.fleiss_kappa.as_dict(),
    }
    if (0, 1) in report.pairwise_kappa:
        out["cohen_kappa"] = report.pairwise_kappa[(0, 1)].as_dict()
    if not state.policy.annotator_flip_rates:
        golds = list(Document.objects.filter(project=project, split=Split.HOLDOUT).values_list("gold_label", flat=True))
        prior = np.array([golds.count(name) for name in names], dtype=np.float64)
        if prior.sum():
            out["agreement_truth"] = flip_noise_truth(state.policy.flip_rate, prior)[1]
    return out
