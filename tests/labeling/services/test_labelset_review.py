"""Open review items after a label-set change: a disagreement the change dissolves is closed with a
recorded, audited reason; one still in disagreement stays open, its labels renamed."""

from __future__ import annotations

import pytest

from labeling.models import Annotation, AuditAction, AuditEvent, ReviewItem, ReviewReason, ReviewState
from labeling.selectors.consensus import ANNOTATORS, final_labels
from labeling.services.labelset import labelset_merge, labelset_rename, labelset_retire, labelset_split
from labeling.services.review import ReviewClosedError, document_completed, review_decide, review_lease_next
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    return f.ProjectFactory(labels=[{"name": n, "text": n, "key": str(i + 1)} for i, n in enumerate("abcd")])


def disputed(project, *answers: str, reason: str = ReviewReason.DISAGREEMENT):
    """A complete document with one answer per annotator; sent to review by the rule the service uses."""
    doc = f.DocumentFactory(project=project, labels_required=len(answers), is_labeled=True)
    for answer in answers:
        f.AnnotationFactory(document=doc, label=answer)
    if reason == ReviewReason.DISAGREEMENT:
        assert document_completed(project=project, document=doc, labels=list(answers)) == reason
    else:
        ReviewItem.objects.create(project=project, document=doc, reason=reason)
    return doc


def item_of(doc) -> ReviewItem:
    return ReviewItem.objects.get(document=doc)


def labels_of(doc) -> list[str]:
    return sorted(Annotation.objects.filter(document=doc).values_list("label", flat=True))


def test_a_merge_closes_the_disagreement_it_dissolves_and_keeps_the_others_open(project) -> None:
    manager = f.UserFactory(username="boss")
    dissolved = disputed(project, "a", "b")  # the two labels merged
    still = disputed(project, "b", "c")  # b becomes a: a vs c is still a disagreement
    flagged = disputed(project, "b", reason=ReviewReason.NOISE)  # not a disagreement

    change = labelset_merge(project=project, labels=["b"], into="a", by=manager)

    assert change.review_closed == 1
    closed = item_of(dissolved)
    assert closed.state == ReviewState.CLOSED and closed.decided_at is not None and not closed.decisions.exists()
    assert "merge" in closed.closed_reason and "agree on 'a'" in closed.closed_reason
    event = AuditEvent.objects.get(action=AuditAction.REVIEW_CLOSED)
    assert (event.actor_name, event.target_id) == ("boss", str(closed.pk))
    assert event.data["label"] == "a" and event.data["operation"] == "merge"
    assert event.data["label_set_version"] == change.version.version
    final = final_labels(project=project, document_ids=[dissolved.pk])[dissolved.pk]
    assert (final.label, final.decided_by) == ("a", ANNOTATORS)  # the consensus is its final label now
    # Still in disagreement: open, with the merged label's new name; the noise item stays open too.
    assert item_of(still).state == ReviewState.OPEN and labels_of(still) == ["a", "c"]
    assert item_of(flagged).state == ReviewState.OPEN and labels_of(flagged) == ["a"]
    # A reviewer meets only the open ones; a decision on the closed item is refused.
    reviewer = f.UserFactory()
    leased = {review_lease_next(project=project, reviewer=reviewer, exclude=[]).pk}
    assert closed.pk not in leased
    with pytest.raises(ReviewClosedError):
        review_decide(item=closed, reviewer=reviewer, label="a")


def test_a_rename_keeps_every_disagreement_open_with_its_labels_renamed(project) -> None:
    doc = disputed(project, "a", "b")
    change = labelset_rename(project=project, label="b", new_name="beta", by=f.UserFactory())
    assert change.review_closed == 0
    assert item_of(doc).state == ReviewState.OPEN and labels_of(doc) == ["a", "beta"]
    assert not AuditEvent.objects.filter(action=AuditAction.REVIEW_CLOSED).exists()


def test_a_retire_closes_only_a_disagreement_left_with_agreeing_answers(project) -> None:
    manager = f.UserFactory()
    voided = disputed(project, "a", "c")  # one answer left: nobody agreed with it, a reviewer decides
    agreed = disputed(project, "a", "a", "c", "c")  # a tie; without c two answers agree on a
    both_gone = disputed(project, "c", "d")

    change = labelset_retire(project=project, label="c", by=manager)

    assert change.review_closed == 1
    assert item_of(voided).state == ReviewState.OPEN
    assert item_of(both_gone).state == ReviewState.OPEN
    closed = item_of(agreed)
    assert closed.state == ReviewState.CLOSED and "retire" in closed.closed_reason
    assert labels_of(agreed) == ["a", "a", "c", "c"]  # a retire keeps every annotation


def test_a_split_judges_the_items_like_a_retire(project) -> None:
    agreed = disputed(project, "a", "a", "b", "b")
    voided = disputed(project, "a", "b")
    change = labelset_split(project=project, label="b", new_labels=["b1", "b2"], by=f.UserFactory())
    assert change.review_closed == 1
    assert item_of(agreed).state == ReviewState.CLOSED and item_of(voided).state == ReviewState.OPEN
