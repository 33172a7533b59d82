"""A simulated team for the replay: noisy annotators, overlap on the holdout, and review of flagged labels.

- Annotators answer the gold label, except that each flips it with their own rate to one of the other
  labels, chosen uniformly (``TeamPolicy.flip_rate``, or ``annotator_flip_rates`` one per annotator).
- Overlap: each holdout document the queue serves is labeled by ``holdout_overlap`` simulated annotators;
  their answers are the ratings the agreement figures (``modelsvc.agreement``) are computed from, and
  every one of them is a label spent.
- Review: after each retrain, the newest model's flagged labels (``labeling.services.training.
  label_issues``: the top share ranked by ``modelsvc.noise`` on the run's out-of-fold probabilities) not
  yet reviewed are reviewed, the top ``review_share`` of the run's labels at most; a simulated reviewer
  gives the gold label, one label spent each.

Two writes stand in for services this branch does not have yet, each in one function so they can be
pointed at the real ones: ``second_opinion_write`` (the overlap queue would serve the document again to
another annotator) and ``review_write`` (the review service's decision; here the reviewer's label is
written as an audited revision of the annotations, ``annotation_update``, which keeps the previous label).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from labeling.models import Annotation, AnnotationSource, Document, Project
from labeling.services.annotations import annotation_update
from modelsvc.noise import REVIEW_SHARE

MAX_OVERLAP = 5


@dataclass(frozen=True)
class TeamPolicy:
    """How the simulated team labels. The default is the noiseless single annotator of every replay."""

    flip_rate: float = 0.0
    annotator_flip_rates: tuple[float, ...] = ()
    holdout_overlap: int = 1
    review_share: float = 0.0

    def __post_init__(self) -> None:
        rates = (self.flip_rate, *self.annotator_flip_rates)
        if not all(0.0 <= r <= 1.0 for r in rates):
            raise ValueError("flip rates must be in [0, 1]")
        if not 1 <= self.holdout_overlap <= MAX_OVERLAP:
            raise ValueError(f"holdout_overlap must be 1..{MAX_OVERLAP}")
        if not 0.0 <= self.review_share <= REVIEW_SHARE:
            raise ValueError(f"review_share must be in [0, {REVIEW_SHARE}] (the share a run flags)")

    @property
    def is_noiseless(self) -> bool:
        return self == TeamPolicy()

    def rate(self, annotator: int) -> float:
        rates = self.annotator_flip_rates
        return rates[annotator % len(rates)] if rates else self.flip_rate

    def tag(self) -> str:
        """A short name for curves: '' for the default team, else e.g. 'flip0.15 overlap2 review0.1'."""
        parts = []
        if self.annotator_flip_rates:
            parts.append("flip" + "/".join(f"{r:g}" for r in self.annotator_flip_rates))
        elif self.flip_rate:
            parts.append(f"flip{self.flip_rate:g}")
        if self.holdout_overlap > 1:
            parts.append(f"overlap{self.holdout_overlap}")
        if self.review_share:
            parts.append(f"review{self.review_share:g}")
        return " ".join(parts)


@dataclass
class TeamState:
    """What the simulation spent and saw in one replay run."""

    policy: TeamPolicy
    label_names: list[str]
    rng: np.random.Generator
    reviews: int = 0
    reviews_changed: int = 0
    reviewed: set[int] = field(default_factory=set)
    # holdout document id -> [label index per simulated annotator]
    holdout_ratings: dict[int, list[int]] = field(default_factory=dict)

    def answer(self, annotator: int, gold: str) -> str:
        """The simulated annotator's label for a document whose gold label is ``gold``."""
        if self.rng.random() >= self.policy.rate(annotator):
            return gold
        others = [name for name in self.label_names if name != gold]
        return others[int(self.rng.integers(len(others)))]

    def ratings_matrix(self) -> np.ndarray:
        """(N, overlap) label indices of the overlapped holdout documents (NaN where fewer answered)."""
        k = self.policy.holdout_overlap
        rows = [r + [np.nan] * (k - len(r)) for r in self.holdout_ratings.values()]
        return np.array(rows, dtype=np.float64).reshape(len(rows), k)


def reviewer_for(project: Project) -> AbstractBaseUser:
    """The simulated reviewer: a site admin, because ``annotation_update`` lets only the annotator or an admin
    change a label (the review service will let a project reviewer decide)."""
    user, _ = get_user_model().objects.get_or_create(username="replay-reviewer", defaults={"is_staff": True})
    return user


def second_opinion_write(*, document_id: int, annotator: AbstractBaseUser, label: str) -> None:
    """Another annotator's label on an already labeled document (stand-in for the overlap queue)."""
    now = timezone.now()
    Annotation.objects.get_or_create(
        document_id=document_id,
        annotator=annotator,
        defaults={"label": label, "source": AnnotationSource.API, "created_at": now, "updated_at": now},
    )


def review_write(*, document_id: int, reviewer: AbstractBaseUser, label: str) -> bool:
    """The reviewer's decision on a document (stand-in for the review service); True if a label changed."""
    changed = False
    for annotation in Annotation.objects.filter(document_id=document_id):
        if annotation.label != label:
            annotation_update(annotation=annotation, user=reviewer, label=label)
            changed = True
    return changed


def review_flagged(state: TeamState, project: Project, flagged: list[int], n_ranked: int) -> None:
    """Review the flagged documents (most suspect first) not reviewed yet, up to ``review_share`` of the run."""
    budget = int(np.ceil(state.policy.review_share * n_ranked))
    todo = [d for d in flagged if d not in state.reviewed][:budget]
    if not todo:
        return
    reviewer = reviewer_for(project)
    gold = dict(Document.objects.filter(pk__in=todo).values_list("id", "gold_label"))
    for doc_id in todo:
        state.reviewed.add(doc_id)
        state.reviews += 1
        state.reviews_changed += review_write(document_id=doc_id, reviewer=reviewer, label=gold[doc_id])
