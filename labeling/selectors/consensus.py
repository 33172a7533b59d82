"""Final labels: what each labeled document trains on, and who decided it.

The rule (docs/ARCHITECTURE.md, "Team labeling"): a reviewer's latest decision wins; otherwise the
project's consensus of the annotators' labels (``LabelSpace.consensus`` with the project's
``min_agreement``); a document still waiting for some of its ``labels_required`` has none yet, and
one whose annotators disagree has none until a reviewer decides it. Annotators' own labels are never
changed by any of this: a decision is stored beside them.

What trains (``training_labels``) is the final labels; a reviewer's verdict, once given, replaces the
label it decides. A project may choose (``Project.noise_hold_flagged``, off by default) to hold back
the labels under suspicion too: a document the label-noise loop flagged (an open ``noise`` review item)
then stops training until a reviewer decides it. It is off by default because the replay measured it
not to help (docs/REPLAY.md): the held-back labels were mostly good ones. Exports and agreement always
see the annotators' consensus.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from labeling.labelspace import Consensus
from labeling.models import Annotation, Document, Project, ReviewDecision, ReviewItem, ReviewReason, ReviewState

ANNOTATORS = "annotators"
REVIEWER = "reviewer"


@dataclass(frozen=True)
class FinalLabel:
    document_id: int
    labels: list[tuple[int, str]]  # (annotator id, label), in the order given
    required: int  # the document's labels_required
    consensus: Consensus
    label: str | None  # what the model trains on; None: waiting for labels, or for review
    decided_by: str  # "annotators", "reviewer", or "" when there is no final label
    reviewer: str | None = None  # the deciding reviewer's username
    reviewer_id: int | None = None

    @property
    def complete(self) -> bool:
        """All its labels are in (a document with fewer labels has no consensus yet)."""
        return len(self.labels) >= self.required


def final_labels(
    *, project: Project, split: str | None = None, document_ids: list[int] | None = None
) -> dict[int, FinalLabel]:
    """{document id: FinalLabel} for every document of ``project`` with a label (of ``split``)."""
    space = project.label_space
    annotations = Annotation.objects.filter(project=project)
    decisions = ReviewDecision.objects.filter(project=project)
    if split is not None:
        annotations = annotations.filter(document__split=split)
        decisions = decisions.filter(document__split=split)
    if document_ids is not None:
        annotations = annotations.filter(document_id__in=document_ids)
        decisions = decisions.filter(document_id__in=document_ids)
    given: dict[int, list[tuple[int, str]]] = defaultdict(list)
    required: dict[int, int] = {}
    rows = annotations.order_by("id").values_list("document_id", "annotator_id", "label", "document__labels_required")
    for doc_id, annotator_id, label, labels_required in rows:
        given[doc_id].append((annotator_id, label))
        required[doc_id] = labels_required
    # The latest decision per document wins (a decision is an append-only record).
    decided: dict[int, tuple[str, str, int]] = {}
    for doc_id, label, username, reviewer_id in decisions.order_by("id").values_list(
        "document_id", "label", "reviewer__username", "reviewer_id"
    ):
        decided[doc_id] = (label, username, reviewer_id)
    out: dict[int, FinalLabel] = {}
    for doc_id, labels in given.items():
        consensus = space.consensus([label for _, label in labels], project.min_agreement)
        complete = len(labels) >= required[doc_id]
        if doc_id in decided and space.is_current(decided[doc_id][0]):
            label, username, reviewer_id = decided[doc_id]
            out[doc_id] = FinalLabel(
                doc_id, labels, required[doc_id], consensus, label, REVIEWER, username, reviewer_id
            )
        elif complete and consensus.label is not None:
            out[doc_id] = FinalLabel(doc_id, labels, required[doc_id], consensus, consensus.label, ANNOTATORS)
        else:
            out[doc_id] = FinalLabel(doc_id, labels, required[doc_id], consensus, None, "")
    return out


def flagged_pending(*, project: Project, split: str | None = None) -> set[int]:
    """Documents of ``project`` (of ``split``) the noise loop flagged that no reviewer has decided yet."""
    items = ReviewItem.objects.filter(project=project, reason=ReviewReason.NOISE, state=ReviewState.OPEN)
    if split is not None:
        items = items.filter(document__split=split)
    return set(items.values_list("document_id", flat=True))


def training_labels(
    *, project: Project, split: str, hold_flagged: bool | None = None
) -> list[tuple[int, str, str]]:
    """(document id, text, final label) per document of ``split`` that has one, newest first.

    ``hold_flagged`` True leaves out the documents ``flagged_pending`` names; False gives every final
    label (the replay's measure of wrong labels); None (what training and the holdout gate use) follows
    the project's ``noise_hold_flagged``.
    """
    if hold_flagged is None:
        hold_flagged = project.noise_hold_flagged
    finals = final_labels(project=project, split=split)
    held = flagged_pending(project=project, split=split) if hold_flagged else set()
    agreed = {doc_id: f.label for doc_id, f in finals.items() if f.label is not None and doc_id not in held}
    texts = dict(Document.objects.filter(pk__in=list(agreed)).values_list("id", "text"))
    return [(doc_id, texts[doc_id], agreed[doc_id]) for doc_id in sorted(agreed, reverse=True)]
