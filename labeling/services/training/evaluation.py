"""The challenger and the champion on the same labeled holdout: the figures the promotion gate reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from labeling.models import ModelVersion, Project
from labeling.selectors.models import champion_get
from labeling.services import modeling
from labeling.services.training.recalibration import HoldoutRows
from modelsvc.holdout import HoldoutAssessment
from modelsvc.model import Classifier
from modelsvc.promotion import PairedOutcome, paired_outcome, promotion_decision


@dataclass(frozen=True)
class Evaluation:
    """The challenger's stored metrics, and what it is compared with."""

    metrics: dict[str, Any]
    champion: ModelVersion | None  # None: there is no champion, the challenger is the first model
    paired: PairedOutcome | None  # None: no champion, or no labeled holdout to compare the two on

    def decide(self, tolerance: float) -> tuple[bool, str]:
        """The promotion gate on these figures: (promote?, the reason in words)."""
        champion_calibration = (
            self.champion.metrics.get("calibration_split", {}).get("accuracy") if self.champion else None
        )
        return promotion_decision(
            has_champion=self.champion is not None,
            holdout_count=self.metrics["holdout_count"],
            holdout_classes=self.metrics["holdout_classes"],
            challenger_accuracy=self.metrics.get("accuracy"),
            champion_accuracy=self.paired.champion_accuracy if self.paired else None,
            challenger_calibration_accuracy=self.metrics["calibration_split"].get("accuracy"),
            champion_calibration_accuracy=None if champion_calibration is None else float(champion_calibration),
            tolerance=tolerance,
            champion_only_correct=self.paired.champion_only if self.paired else None,
            challenger_only_correct=self.paired.challenger_only if self.paired else None,
        )


def metrics_compact(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as stored on a model version: without the uncalibrated reliability bins."""
    return {k: v for k, v in metrics.items() if not k.startswith("reliability_uncalibrated")}


def _right(label_names: list[str], predicted: np.ndarray, truth: list[str]) -> np.ndarray:
    """(N,) bool: whether each predicted index names the true label."""
    return np.array([label_names[int(i)] == t for i, t in zip(predicted, truth, strict=True)], dtype=bool)


def challenger_evaluate(
    *,
    project: Project,
    challenger: ModelVersion,
    classifier: Classifier,
    holdout: HoldoutRows,
    assessment: HoldoutAssessment | None,
) -> Evaluation:
    """Challenger metrics on the labeled holdout (``assessment``: None when it has none), and the champion's
    accuracy on the same documents, re-measured now."""
    metrics: dict[str, Any] = dict(challenger.metrics)
    truth = [label for _, _, label in holdout]
    metrics["holdout_count"] = len(holdout)
    metrics["holdout_classes"] = len(set(truth))
    if assessment is not None:
        metrics.update(metrics_compact(assessment.metrics))
        metrics["evaluated_on"] = "holdout"
    else:
        metrics["evaluated_on"] = "calibration_split"
    champion = champion_get(project_id=project.pk)
    if champion is None:
        return Evaluation(metrics, None, None)
    metrics["champion_version"] = champion.version
    if assessment is None:
        return Evaluation(metrics, champion, None)
    champion_clf = modeling.classifier_for(champion)
    res = modeling.classifier_score(champion_clf, [text for _, text, _ in holdout])
    # Compared by label name: the champion may have been trained with another label order.
    champion_right = _right(champion_clf.label_names, res.predicted, truth)
    challenger_right = _right(classifier.label_names, assessment.predicted, truth)
    paired = paired_outcome(champion_right, challenger_right)
    metrics["champion_holdout_accuracy"] = paired.champion_accuracy
    metrics["holdout_discordant"] = {"champion_only": paired.champion_only, "challenger_only": paired.challenger_only}
    return Evaluation(metrics, champion, paired)
