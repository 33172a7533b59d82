"""A simulated team for the replay: noisy annotators, overlap on the holdout, and review of flagged labels.

- Annotators answer the gold label, except that each flips it with their own rate to one of the other
  labels, chosen uniformly (``TeamPolicy.flip_rate``, or ``annotator_flip_rates`` one per annotator).
- Overlap: the project's own overlap policy (``overlap`` = ``holdout_overlap``, scope ``holdout``), so
  the queue serves each holdout document to that many different annotators; their labels are the ratings
  the agreement figures (``modelsvc.agreement``) are computed from, and every one is a label spent.
- Review: after each retrain the service has sent the run's most likely wrong labels to the review queue
  (``labeling.services.training.label_issues``); a simulated reviewer decides them, most suspect first,
  ``review_share`` of the pool labels added since the previous round (so reviews are that share of all
  pool labels), with the gold label (``labeling.services.review.review_decide``), one label spent each.
  The project flags ``max(review_share, its default share)`` of each run's labels; a flagged label the
  reviewer has not reached keeps training, or with ``hold_flagged`` (the project's
  ``noise_hold_flagged``) is held back from training, exactly as in the service.
  Disagreements on the overlapped holdout stay open: the replay measures the noise loop, and an
  undecided holdout document is left out of the gate's holdout exactly as in the service.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from labeling.models import (
    MAX_NOISE_REVIEW_SHARE,
    MAX_OVERLAP,
    NOISE_REVIEW_SHARE,
    Document,
    Project,
    ReviewItem,
    ReviewState,
)
from labeling.roles import REVIEWER
from labeling.services import memberships
from labeling.services.review import review_decide


@dataclass(frozen=True)
class TeamPolicy:
    """How the simulated team labels. The default is the noiseless single annotator of every replay."""

    flip_rate: float = 0.0
    annotator_flip_rates: tuple[float, ...] = ()
    holdout_overlap: int = 1
    review_share: float = 0.0
    hold_flagged: bool = False  # the project's noise_hold_flagged: flagged labels wait for review

    def __post_init__(self) -> None:
        rates = (self.flip_rate, *self.annotator_flip_rates)
        if not all(0.0 <= r <= 1.0 for r in rates):
            raise ValueError("flip rates must be in [0, 1]")
        if not 1 <= self.holdout_overlap <= MAX_OVERLAP:
            raise ValueError(f"holdout_overlap must be 1..{MAX_OVERLAP}")
        if not 0.0 <= self.review_share <= MAX_NOISE_REVIEW_SHARE:
            raise ValueError(f"review_share must be in [0, {MAX_NOISE_REVIEW_SHARE}]")

    def project_policy(self) -> dict[str, object]:
        """The project's overlap policy for this team, a flag share that covers the review budget, and
        whether flagged labels wait for review."""
        policy: dict[str, object] = {}
        if self.holdout_overlap > 1:
            policy |= {"overlap": self.holdout_overlap, "overlap_scope": "holdout"}
        if self.review_share > NOISE_REVIEW_SHARE:
            policy["noise_review_share"] = self.review_share
        if self.hold_flagged:
            policy["noise_hold_flagged"] = True
        return policy

    @property
    def is_noiseless(self) -> bool:
        return self == TeamPolicy()

    def rate(self, annotator: int) -> float:
        rates = self.annotator_flip_rates
        return rates[annotator % len(rates)] if rates else self.flip_rate

    def tag(self) -> str:
        """A short name for curves: '' for the default team, else e.g. 'flip0.15 overlap2 review0.1 hold'."""
        parts = []
        if self.annotator_flip_rates:
            parts.append("flip" + "/".join(f"{r:g}" for r in self.annotator_flip_rates))
        elif self.flip_rate:
            parts.append(f"flip{self.flip_rate:g}")
        if self.holdout_overlap > 1:
            parts.append(f"overlap{self.holdout_overlap}")
        if self.review_share:
            parts.append(f"review{self.review_share:g}")
        if self.hold_flagged:
            parts.append("hold")
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
    budgeted_labels: int = 0  # pool labels the review budget has already been counted on

    def answer(self, annotator: int, gold: str) -> str:
        """The simulated annotator's label for a document whose gold label is ``gold``."""
        if self.rng.random() >= self.policy.rate(annotator):
            return gold
        others = [name for name in self.label_names if name != gold]
        return others[int(self.rng.integers(len(others)))]


def reviewer_for(project: Project) -> AbstractBaseUser:
    """The simulated reviewer: a member of the project with the reviewer role."""
    user, _ = get_user_model().objects.get_or_create(username="replay-reviewer")
    memberships.membership_ensure(project=project, user=user, role=REVIEWER)
    return user


def review_flagged(state: TeamState, project: Project, flagged: list[int], pool_labels: int) -> None:
    """Decide flagged documents, most suspect first, ``review_share`` of the labels added since last time.

    The budget follows the new labels, so reviews stay ``review_share`` of the pool labels overall; the
    candidates are the run's flags (the most suspect of all its labels, a reviewer's verdicts excluded).
    """
    budget = int(np.ceil(state.policy.review_share * max(0, pool_labels - state.budgeted_labels)))
    state.budgeted_labels = max(state.budgeted_labels, pool_labels)
    todo = [d for d in flagged if d not in state.reviewed][:budget]
    if not todo:
        return
    reviewer = reviewer_for(project)
    gold = dict(Document.objects.filter(pk__in=todo).values_list("id", "gold_label"))
    items = {i.document_id: i for i in ReviewItem.objects.filter(document_id__in=todo, state=ReviewState.OPEN)}
    for doc_id in todo:
        state.reviewed.add(doc_id)
        item = items.get(doc_id)
        if item is None:
            continue  # not open: the service flags no document a reviewer has decided
        space = project.label_space
        decision = review_decide(item=item, reviewer=reviewer, **{space.answer_field: space.parse(gold[doc_id])})
        state.reviews += 1
        state.reviews_changed += bool(decision.replaced_label) and decision.replaced_label != decision.label
