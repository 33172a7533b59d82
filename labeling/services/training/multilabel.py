"""A multi-label challenger and the champion on the same labeled holdout: the figures the gate reads.

The single-label path (``evaluation``) measures accuracy; a set answer is judged by its example F1
(the per-item F1 of the predicted set against the true one), the pairs by a sign test over the items
only one model scores better on (``modelsvc.promotion.multilabel_paired_outcome``). The per-label
temperatures and thresholds stay as cross-fitted on the pool (there is no holdout refit for them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labeling.labelspace import label_space
from labeling.models import ModelVersion, Project
from labeling.selectors.models import champion_get
from labeling.services import modeling
from labeling.services.training.evaluation import Evaluation, metrics_compact
from labeling.services.training.recalibration import HoldoutRows, holdout_arrays
from modelsvc.inference import score_multilabel_embeddings
from modelsvc.model import Classifier
from modelsvc.multilabel import evaluate_multilabel
from modelsvc.promotion import multilabel_paired_outcome, promotion_decision

#: The figure the multi-label gate compares (mean per-item F1 of the predicted set).
MEASURE = "example_f1"


@dataclass(frozen=True)
class MultiLabelEvaluation(Evaluation):
    def decide(self, tolerance: float) -> tuple[bool, str]:
        champion_oof = self.champion.metrics.get("calibration_split", {}).get(MEASURE) if self.champion else None
        return promotion_decision(
            has_champion=self.champion is not None,
            holdout_count=self.metrics["holdout_count"],
            holdout_classes=self.metrics["holdout_classes"],
            challenger_accuracy=self.metrics.get(MEASURE) if self.metrics["evaluated_on"] == "holdout" else None,
            champion_accuracy=self.paired.champion_accuracy if self.paired else None,
            challenger_calibration_accuracy=self.metrics["calibration_split"].get(MEASURE),
            champion_calibration_accuracy=None if champion_oof is None else float(champion_oof),
            tolerance=tolerance,
            champion_only_correct=self.paired.champion_only if self.paired else None,
            challenger_only_correct=self.paired.challenger_only if self.paired else None,
            measure="example F1",
        )


def _in_order(predicted: np.ndarray, names: list[str], order: list[str]) -> np.ndarray:
    """Predicted sets (N, C) bool in ``names`` order, re-ordered to ``order`` (labels it lacks: never predicted)."""
    out = np.zeros((len(predicted), len(order)), dtype=bool)
    for j, name in enumerate(order):
        if name in names:
            out[:, j] = predicted[:, names.index(name)]
    return out


def multilabel_challenger_evaluate(
    *, project: Project, challenger: ModelVersion, classifier: Classifier, holdout: HoldoutRows
) -> MultiLabelEvaluation:
    """The challenger's multi-label metrics on the labeled holdout, and the champion's on the same items."""
    metrics: dict[str, Any] = dict(challenger.metrics)
    space = label_space(project.task_type, classifier.label_names)
    present = {name for _, _, stored in holdout for name in space.parse(stored)}
    metrics["holdout_count"] = len(holdout)
    metrics["holdout_classes"] = len(present)  # labels that occur: the gate needs 2 or more
    metrics["evaluated_on"] = "calibration_split"
    if not holdout:
        return MultiLabelEvaluation(metrics, champion_get(project_id=project.pk), None)
    embeddings, targets = holdout_arrays(project, classifier, holdout)
    scored = score_multilabel_embeddings(classifier, embeddings)
    measured = evaluate_multilabel(
        scored.probs_uncalibrated, scored.probs, targets, classifier.thresholds, classifier.label_names
    )
    metrics.update(metrics_compact(measured))
    metrics["evaluated_on"] = "holdout"
    champion = champion_get(project_id=project.pk)
    if champion is None:
        return MultiLabelEvaluation(metrics, None, None)
    metrics["champion_version"] = champion.version
    champion_clf = modeling.classifier_for(champion)
    if not champion_clf.multi_label:
        return MultiLabelEvaluation(metrics, champion, None)
    res = modeling.classifier_score(champion_clf, [text for _, text, _ in holdout])
    # Compared by label name: the champion may have been trained with another label order.
    champion_pred = _in_order(np.asarray(res.predicted), champion_clf.label_names, classifier.label_names)
    paired, _ = multilabel_paired_outcome(champion_pred, scored.predicted, targets)
    metrics["champion_holdout_example_f1"] = paired.champion_accuracy
    metrics["holdout_discordant"] = {"champion_only": paired.champion_only, "challenger_only": paired.challenger_only}
    return MultiLabelEvaluation(metrics, champion, paired)
