"""The label space: one place that maps a project's label names <-> indices <-> model outputs.

Everything that depends on the task type (one label per item today; a set of labels per item with
sigmoid outputs next) is decided here: which answers are valid, how answers become training targets,
how a row of model probabilities becomes the stored prediction columns, and how several
annotators' answers make one. Services, selectors, views and the replay take a ``LabelSpace`` from
``label_space_for_project`` / ``label_space_for_model`` (or ``Project.label_space``) instead of
reading ``project.labels`` or ``ModelVersion.label_map`` themselves, so a new task type is a new
subclass here (and an output head in modelsvc), not an edit in every file that touches a label.

Plain Python + numpy: no ORM queries, no Django imports (an import-linter contract keeps it so);
the project and model version are read through the attributes they already carry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

SINGLE_LABEL = "single_label"


class _HasLabels(Protocol):
    labels: Any  # the stored label set: [{name, text, key}]
    task_type: str


class _HasLabelMap(Protocol):
    label_map: Any  # the label names the model was trained on, in output order


@dataclass(frozen=True)
class PredictionFields:
    """The stored Prediction columns that depend on the task type, for one document."""

    probabilities: list[float]  # (C,) in label order
    predicted_label: str
    confidence: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "probabilities": self.probabilities,
            "predicted_label": self.predicted_label,
            "confidence": self.confidence,
        }


class ConsensusReason:
    """Why a consensus came out as it did (plain strings: they are exported and shown)."""

    AGREED = "agreed"  # one top label whose share reaches the minimum agreement
    TIE = "tie"  # two or more labels share the top count: never a consensus
    LOW_AGREEMENT = "low_agreement"  # a single top label, below the minimum agreement
    NO_ANSWER = "no_answer"  # no valid answer at all


@dataclass(frozen=True)
class Consensus:
    """Several annotators' answers made one, or not: ``label`` is None unless ``reason`` is agreed."""

    label: str | None
    agreement: float  # the top answer's share of the valid answers, in [0, 1]; 0 without answers
    reason: str  # a ConsensusReason value
    votes: int  # valid answers counted

    @property
    def agreed(self) -> bool:
        return self.label is not None


class LabelSpace(ABC):
    """An ordered label set of one task type. Subclasses say what an answer and an output are."""

    task_type: ClassVar[str]

    def __init__(self, names: Sequence[str]) -> None:
        self.names: tuple[str, ...] = tuple(str(n) for n in names)
        self._index = {name: i for i, name in enumerate(self.names)}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self.names)!r})"

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        """The output position of ``name``; -1 when it is not in the set (e.g. a label since removed)."""
        return self._index.get(name, -1)

    def probabilities(self, stored: Sequence[float] | None) -> dict[str, float]:
        """{name: probability} from a stored probability row; a row of another length is cut to fit."""
        return dict(zip(self.names, stored if isinstance(stored, list | tuple) else [], strict=False))

    @abstractmethod
    def validate_answer(self, value: object) -> str | None:
        """The error message for an answer that is not valid in this space, or None when it is."""

    @abstractmethod
    def encode(self, answers: Sequence[Any]) -> np.ndarray:
        """Training targets for N answers: (N,) int64 class indices for a single label."""

    @abstractmethod
    def prediction_fields(self, probs: np.ndarray) -> list[PredictionFields]:
        """The stored prediction columns for N documents from calibrated probabilities (N, C)."""

    @abstractmethod
    def consensus(self, answers: Sequence[str], min_agreement: float = 0.0) -> Consensus:
        """One answer from several annotators' answers, when they agree enough (``min_agreement``)."""


class SingleLabel(LabelSpace):
    """Exactly one label per item; the model outputs a softmax over the C labels."""

    task_type = SINGLE_LABEL

    def validate_answer(self, value: object) -> str | None:
        if not isinstance(value, str) or value not in self._index:
            return f"must be one of {list(self.names)}"
        return None

    def encode(self, answers: Sequence[Any]) -> np.ndarray:
        out = np.empty(len(answers), dtype=np.int64)
        for i, answer in enumerate(answers):
            if answer not in self._index:
                raise ValueError(f"unknown label {answer!r} (known: {', '.join(self.names)})")
            out[i] = self._index[answer]
        return out

    def prediction_fields(self, probs: np.ndarray) -> list[PredictionFields]:
        probs = np.asarray(probs)
        predicted = probs.argmax(1)  # (N,)
        confidence = probs.max(1)  # (N,)
        return [
            PredictionFields(
                probabilities=[float(p) for p in probs[i]],
                predicted_label=self.names[int(predicted[i])],
                confidence=float(confidence[i]),
            )
            for i in range(len(probs))
        ]

    def consensus(self, answers: Sequence[str], min_agreement: float = 0.0) -> Consensus:
        # Majority vote: the single most frequent label, when its share of the valid answers reaches
        # ``min_agreement``. A tie is no consensus (the item goes to review), whatever the order the
        # answers came in. Labels no longer in the set do not vote.
        votes = Counter(a for a in answers if a in self._index)
        total = sum(votes.values())
        if not total:
            return Consensus(None, 0.0, ConsensusReason.NO_ANSWER, 0)
        (top, count), *rest = votes.most_common()
        share = count / total
        if rest and rest[0][1] == count:
            return Consensus(None, share, ConsensusReason.TIE, total)
        if share < min_agreement:
            return Consensus(None, share, ConsensusReason.LOW_AGREEMENT, total)
        return Consensus(top, share, ConsensusReason.AGREED, total)


# The task types a project can have; ``labeling.models.TaskType`` takes its choices from here.
TASK_TYPES: dict[str, type[LabelSpace]] = {SINGLE_LABEL: SingleLabel}
TASK_TYPE_LABELS: dict[str, str] = {SINGLE_LABEL: "Single-label classification"}


def label_space(task_type: str, names: Sequence[str]) -> LabelSpace:
    try:
        cls = TASK_TYPES[task_type]
    except KeyError:
        raise ValueError(f"unknown task type {task_type!r} (known: {', '.join(TASK_TYPES)})") from None
    return cls(names)


def label_space_for_project(project: _HasLabels) -> LabelSpace:
    """The project's label space, from its stored label set [{name, text, key}] and task type."""
    return label_space(project.task_type, [item["name"] for item in project.labels])


def label_space_for_model(model_version: _HasLabelMap, *, task_type: str = SINGLE_LABEL) -> LabelSpace:
    """The label space a trained model outputs, in its own label order (``ModelVersion.label_map``)."""
    return label_space(task_type, list(model_version.label_map or []))
