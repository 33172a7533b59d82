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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np

SINGLE_LABEL = "single_label"
MULTI_LABEL = "multi_label"
#: How a multi-label answer (a set of label names) is stored in one text column (``Annotation.label``,
#: ``Prediction.predicted_label``, review decisions, gold): the names in label-set order joined by this
#: separator, which a label name can never contain (``labeling.models.LABEL_NAME_RE``). The empty set (no
#: label applies) is the empty string.
SET_SEPARATOR = ","


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
    #: The request field an answer travels in: ``label`` (one name) or ``labels`` (a list of names).
    answer_field: ClassVar[str]
    #: The model head this task type trains (``modelsvc.config.ModelConfig.output``).
    output: ClassVar[str]
    #: Whether a softmax over label-description similarities is a fair first guess of this space's
    #: outputs (the pre-model zero-shot order, services/coldstart.py): one label per item, yes.
    zero_shot: ClassVar[bool] = False

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

    def is_current(self, stored: str) -> bool:
        """Whether a stored answer counts in this label set (not one of a label since removed)."""
        return stored in self._index

    def as_json(self, stored: str) -> Any:
        """A stored answer as the API and exports show it: a name (single) or a list of names (multi)."""
        return stored

    def indicators(self, stored: Sequence[str]) -> np.ndarray:
        """(N, C) int64 0/1: which labels each of N stored answers holds (unknown names count nowhere)."""
        out = np.zeros((len(stored), len(self.names)), dtype=np.int64)
        for i, answer in enumerate(stored):
            for name in self.as_names(answer):
                if name in self._index:
                    out[i, self._index[name]] = 1
        return out

    def as_names(self, stored: str) -> tuple[str, ...]:
        """The label names a stored answer holds (one for a single label; empty for "")."""
        return (stored,) if stored else ()

    def answer_from_cell(self, value: Any) -> str | None:
        """The stored answer an import file's cell holds; None for an empty cell; ValueError saying why not."""
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        if text not in self._index:
            raise ValueError(f"{text!r} is not in the project's label set")
        return text

    @abstractmethod
    def validate_answer(self, value: object) -> str | None:
        """The error message for an answer that is not valid in this space, or None when it is."""

    @abstractmethod
    def store(self, value: Any) -> str:
        """The stored (text column) form of a valid answer; ``parse`` reverses it."""

    @abstractmethod
    def parse(self, stored: str) -> Any:
        """The answer a stored text stands for: a label name (single) or a tuple of names (multi)."""

    @abstractmethod
    def encode(self, answers: Sequence[Any]) -> np.ndarray:
        """Training targets for N answers: (N,) int64 class indices for a single label."""

    def training_targets(self, answers: Sequence[Any]) -> Any:
        """What ``modelsvc.training.train`` takes as labels for N stored answers (names, or (N, C) targets)."""
        return self.encode(answers)

    @abstractmethod
    def predicted_columns(
        self, probs: np.ndarray, thresholds: Sequence[float] | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The task-type columns of N predictions from calibrated probabilities (N, C), as arrays.

        Returns (answers, index (N,) int64, confidence (N,)): document i's stored ``predicted_label`` is
        ``answers[index[i]]``. ``thresholds`` (C,): the model's per-label thresholds where its task type
        has them (multi-label).
        """

    def prediction_fields(self, probs: np.ndarray, thresholds: Sequence[float] | None = None) -> list[PredictionFields]:
        """The stored prediction columns for N documents from calibrated probabilities (N, C), one object each."""
        probs = np.asarray(probs, dtype=np.float64)
        answers, index, confidence = self.predicted_columns(probs, thresholds)
        return [
            PredictionFields(
                probabilities=[float(p) for p in probs[i]],
                predicted_label=answers[int(index[i])],
                confidence=float(confidence[i]),
            )
            for i in range(len(probs))
        ]

    @abstractmethod
    def consensus(self, answers: Sequence[str], min_agreement: float = 0.0) -> Consensus:
        """One answer from several annotators' answers, when they agree enough (``min_agreement``)."""


class SingleLabel(LabelSpace):
    """Exactly one label per item; the model outputs a softmax over the C labels."""

    task_type = SINGLE_LABEL
    answer_field = "label"
    output = "softmax"
    zero_shot = True

    def validate_answer(self, value: object) -> str | None:
        if not isinstance(value, str) or value not in self._index:
            return f"must be one of {list(self.names)}"
        return None

    def store(self, value: Any) -> str:
        return str(value)

    def parse(self, stored: str) -> str:
        return stored

    def training_targets(self, answers: Sequence[Any]) -> list[str]:
        return [str(a) for a in answers]  # modelsvc maps names to indices itself (and names an unknown one)

    def encode(self, answers: Sequence[Any]) -> np.ndarray:
        out = np.empty(len(answers), dtype=np.int64)
        for i, answer in enumerate(answers):
            if answer not in self._index:
                raise ValueError(f"unknown label {answer!r} (known: {', '.join(self.names)})")
            out[i] = self._index[answer]
        return out

    def predicted_columns(
        self, probs: np.ndarray, thresholds: Sequence[float] | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        probs = np.asarray(probs, dtype=np.float64)  # a softmax has no thresholds: the top label is the answer
        return list(self.names), probs.argmax(1), probs.max(1)

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


class MultiLabel(LabelSpace):
    """Any subset of the labels per item (the empty set included); the model outputs C independent sigmoids.

    An answer is a list/tuple/set of label names; it is stored as its names in label-set order joined by
    ``SET_SEPARATOR`` (so two annotators who chose the same set store the same text, whatever order they
    pressed the keys in). Training targets are an (N, C) 0/1 matrix; predictions are per-label calibrated
    probabilities, the predicted set is the labels whose probability reaches its threshold (per label,
    chosen on out-of-fold predictions by the model; 0.5 without one).
    """

    task_type = MULTI_LABEL
    answer_field = "labels"
    output = "sigmoid"

    def is_current(self, stored: str) -> bool:
        # An empty set is an answer; a set naming a label since removed does not count as given.
        return not stored or all(name in self._index for name in stored.split(SET_SEPARATOR))

    def as_json(self, stored: str) -> Any:
        return list(self.parse(stored))

    def as_names(self, stored: str) -> tuple[str, ...]:
        return tuple(stored.split(SET_SEPARATOR)) if stored else ()

    def answer_from_cell(self, value: Any) -> str | None:
        # A list (JSONL, Parquet: [] is the empty set) or the names joined by SET_SEPARATOR (CSV, where an
        # empty cell is no label: a spreadsheet cell cannot tell "none applies" from "not labeled").
        if value is None:
            return None
        if isinstance(value, str):
            text = value.strip()
            if not text:
                return None
            names = [name.strip() for name in text.split(SET_SEPARATOR)]
        elif isinstance(value, list | tuple):
            names = [name.strip() if isinstance(name, str) else name for name in value]
        else:
            raise ValueError(f"{value!r} is not a set of labels: a list, or names joined by {SET_SEPARATOR!r}")
        problem = self.validate_answer(names)
        if problem is not None:
            raise ValueError(f"{value!r} {problem}" if problem.startswith("lists") else f"{value!r}: {problem}")
        return self.store(names)

    def validate_answer(self, value: object) -> str | None:
        if not isinstance(value, list | tuple | set | frozenset):
            return f"must be a list of labels from {list(self.names)} (an empty list when none applies)"
        names = list(value)
        unknown = [n for n in names if not isinstance(n, str) or n not in self._index]
        if unknown:
            return f"unknown labels {unknown!r}: each must be one of {list(self.names)}"
        if len(set(names)) != len(names):
            return "lists a label twice"
        return None

    def ordered(self, names: Any) -> tuple[str, ...]:
        """The names of a set in label-set order (unknown names dropped: a label since removed)."""
        chosen = set(names)
        return tuple(n for n in self.names if n in chosen)

    def store(self, value: Any) -> str:
        return SET_SEPARATOR.join(self.ordered(value))

    def relabel(self, stored: str, mapping: Mapping[str, str | None]) -> str:
        """A stored set with its names mapped (``None`` drops one), stored in this space's order.

        For a label-set change: ``self`` is the new set. A mapped name that appears twice is kept once (a
        merge of two labels a set holds). A name this space does not know (one already retired or split
        away, kept as given) is kept, after the known ones in its stored order: nothing is dropped but
        what ``mapping`` drops. The empty string is the empty set.
        """
        out: list[str] = []
        for name in self.as_names(stored):
            new = mapping.get(name, name)
            if new is not None and new not in out:
                out.append(new)
        known = [n for n in self.names if n in out]
        return SET_SEPARATOR.join([*known, *(n for n in out if n not in self._index)])

    def parse(self, stored: str) -> tuple[str, ...]:
        return self.ordered(stored.split(SET_SEPARATOR)) if stored else ()

    def _as_set(self, answer: Any) -> tuple[str, ...]:
        return self.parse(answer) if isinstance(answer, str) else self.ordered(answer)

    def encode(self, answers: Sequence[Any]) -> np.ndarray:
        """(N, C) float32 0/1 targets from N answers (stored texts or sequences of names)."""
        out = np.zeros((len(answers), len(self.names)), dtype=np.float32)
        for i, answer in enumerate(answers):
            names = answer.split(SET_SEPARATOR) if isinstance(answer, str) and answer else answer or ()
            for name in names:
                if name not in self._index:
                    raise ValueError(f"unknown label {name!r} (known: {', '.join(self.names)})")
                out[i, self._index[name]] = 1.0
        return out

    def predicted_sets(self, probs: np.ndarray, thresholds: Sequence[float] | None = None) -> list[tuple[str, ...]]:
        """The predicted set of each of N documents: labels whose probability reaches its threshold."""
        probs = np.asarray(probs, dtype=np.float64)
        t = np.full(len(self.names), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        chosen = probs >= t[None, :]
        return [tuple(self.names[j] for j in np.flatnonzero(row)) for row in chosen]

    def predicted_columns(
        self, probs: np.ndarray, thresholds: Sequence[float] | None = None
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        # Confidence is the probability that the whole predicted set is right, the labels taken as
        # independent (the product of max(p, 1 - p) over labels): what "how sure is the model of this
        # answer" means when the answer is a set.
        probs = np.asarray(probs, dtype=np.float64).reshape(len(probs), len(self.names))
        t = np.full(len(self.names), 0.5) if thresholds is None else np.asarray(thresholds, dtype=np.float64)
        chosen, index = np.unique(probs >= t[None, :], axis=0, return_inverse=True)  # the distinct sets
        answers = [self.store(self.names[j] for j in np.flatnonzero(row)) for row in chosen]
        confidence = np.prod(np.maximum(probs, 1.0 - probs), axis=1) if probs.size else np.zeros(len(probs))
        return answers, index.reshape(-1).astype(np.int64), confidence

    def consensus(self, answers: Sequence[Any], min_agreement: float = 0.0) -> Consensus:
        # Per-label majority: a label is in the consensus set when more than half of the valid answers
        # include it. A label the answers split evenly on is a tie (no consensus: review). The agreement
        # is the weakest label's majority share, so ``min_agreement`` asks every label to be agreed that well.
        # A stored set naming a label no longer in the set (one split away, kept as given until its
        # annotator answers again) does not vote, as a single label no longer in the set does not.
        valid = [
            self._as_set(a)
            for a in answers
            if (isinstance(a, str) and self.is_current(a)) or isinstance(a, list | tuple | set | frozenset)
        ]
        total = len(valid)
        if not total:
            return Consensus(None, 0.0, ConsensusReason.NO_ANSWER, 0)
        counts = Counter(name for answer in valid for name in set(answer))
        shares = {name: counts.get(name, 0) / total for name in self.names}
        if any(2 * counts.get(name, 0) == total for name in self.names):
            weakest = min(max(s, 1.0 - s) for s in shares.values())
            return Consensus(None, weakest, ConsensusReason.TIE, total)
        weakest = min(max(s, 1.0 - s) for s in shares.values()) if shares else 1.0
        if weakest < min_agreement:
            return Consensus(None, weakest, ConsensusReason.LOW_AGREEMENT, total)
        return Consensus(self.store(n for n in self.names if shares[n] > 0.5), weakest, ConsensusReason.AGREED, total)


# The task types a project can have; ``labeling.models.TaskType`` takes its choices from here.
TASK_TYPES: dict[str, type[LabelSpace]] = {SINGLE_LABEL: SingleLabel, MULTI_LABEL: MultiLabel}
TASK_TYPE_LABELS: dict[str, str] = {
    SINGLE_LABEL: "Single-label classification",
    MULTI_LABEL: "Multi-label classification",
}


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
