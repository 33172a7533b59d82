"""Review: what goes to review, leases for reviewers, decisions beside the labels, and the noise hook."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection

from labeling.models import Annotation, ReviewAction, ReviewDecision, ReviewItem, ReviewReason, ReviewState
from labeling.selectors.consensus import final_labels
from labeling.selectors.models import majority_labels
from labeling.services.annotations import annotation_submit, annotation_update
from labeling.services.assignments import assignment_next
from labeling.services.documents import document_bulk_create
from labeling.services.projects import project_create
from labeling.services.review import (
    ReviewClosedError,
    ReviewLeasedError,
    review_comment,
    review_decide,
    review_flag,
    review_lease_next,
    review_release,
)
from labeling.services.training.triggers import retrain_due
from tests.factories import ModelVersionFactory, UserFactory

pytestmark = pytest.mark.django_db


def make_project(n: int = 4, **policy):
    project = project_create(name=f"r{policy}", labels=["a", "b", "c"], holdout_fraction=0.0, **policy)
    docs = [d for d, _ in document_bulk_create(project=project, items=[{"text": f"doc {i}"} for i in range(n)])]
    return project, docs


def label_all(project, answers: dict[str, str]) -> None:
    """Each named annotator labels everything the queue gives them with their one answer."""
    for name, label in answers.items():
        user = _user(name)
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            annotation_submit(assignment=lease, user=user, label=label)


def _user(name: str):
    return get_user_model().objects.filter(username=name).first() or UserFactory(username=name)


def test_a_disagreement_goes_to_review_and_an_agreement_does_not() -> None:
    project, docs = make_project(2, overlap=2)
    label_all(project, {"ann": "a", "bob": "a"})
    assert not ReviewItem.objects.exists()
    project2, _ = make_project(2, overlap=2, description="2")
    label_all(project2, {"cat": "a", "dan": "b"})
    items = ReviewItem.objects.filter(project=project2)
    assert items.count() == 2 and {i.reason for i in items} == {ReviewReason.DISAGREEMENT}
    assert majority_labels(project=project2, split="pool") == []  # no consensus: nothing trains yet


def test_an_audit_share_of_single_labels_goes_to_review() -> None:
    project, docs = make_project(4, review_audit_share=1.0)
    label_all(project, {"ann": "a"})
    assert ReviewItem.objects.filter(project=project, reason=ReviewReason.AUDIT).count() == 4
    quiet, _ = make_project(4, description="none")
    label_all(quiet, {"bob": "a"})
    assert not ReviewItem.objects.filter(project=quiet).exists()


def test_an_edited_label_that_breaks_the_agreement_goes_to_review() -> None:
    project, docs = make_project(1, overlap=2)
    label_all(project, {"ann": "a", "bob": "a"})
    annotation = Annotation.objects.get(annotator__username="bob")
    annotation_update(annotation=annotation, user=annotation.annotator, label="b")
    assert ReviewItem.objects.get().reason == ReviewReason.DISAGREEMENT


def test_review_flag_opens_noise_items_once_with_their_scores() -> None:
    project, docs = make_project(4)
    label_all(project, {"ann": "a"})
    other, other_docs = make_project(1, description="other")
    label_all(other, {"bob": "a"})
    ids = [docs[0].pk, docs[1].pk, other_docs[0].pk]
    assert review_flag(project=project, document_ids=ids, reason="noise", scores=[0.9, 0.4, 0.99]) == 2
    assert review_flag(project=project, document_ids=ids, reason="noise", scores=[0.9, 0.4, 0.99]) == 0
    assert dict(ReviewItem.objects.values_list("document_id", "score")) == {docs[0].pk: 0.9, docs[1].pk: 0.4}
    with pytest.raises(ValidationError) as bad:
        review_flag(project=project, document_ids=[docs[2].pk], reason="hunch")
    assert "reason" in bad.value.message_dict
    with pytest.raises(ValidationError) as short:
        review_flag(project=project, document_ids=[docs[2].pk], reason="noise", scores=[])
    assert "scores" in short.value.message_dict
    assert ReviewItem.objects.count() == 2


def test_a_flagged_label_keeps_training_by_default_and_a_decision_replaces_it() -> None:
    project, docs = make_project(4)
    assert project.noise_hold_flagged is False
    label_all(project, {"ann": "a"})
    review_flag(project=project, document_ids=[docs[0].pk, docs[1].pk], reason="noise", scores=[0.9, 0.8])
    trains = {doc_id: label for doc_id, _, label in majority_labels(project=project, split="pool")}
    assert trains == {doc.pk: "a" for doc in docs}  # nothing held back while the flags wait
    held = majority_labels(project=project, split="pool", hold_flagged=True)
    assert {doc_id for doc_id, _, _ in held} == {docs[2].pk, docs[3].pk}  # an explicit choice still holds
    flagged = {i.document_id: i for i in ReviewItem.objects.filter(reason=ReviewReason.NOISE)}
    review_decide(item=flagged[docs[0].pk], reviewer=UserFactory(username="rev"), label="b")
    trains = {doc_id: label for doc_id, _, label in majority_labels(project=project, split="pool")}
    assert trains == {docs[0].pk: "b", docs[1].pk: "a", docs[2].pk: "a", docs[3].pk: "a"}


def test_a_flagged_label_stops_training_until_a_reviewer_decides_it_where_the_project_holds_it() -> None:
    project, docs = make_project(4, noise_hold_flagged=True)
    label_all(project, {"ann": "a"})
    review_flag(project=project, document_ids=[docs[0].pk, docs[1].pk], reason="noise", scores=[0.9, 0.8])
    review_flag(project=project, document_ids=[docs[2].pk], reason="audit")  # random audit: not a suspicion
    trains = {doc_id: label for doc_id, _, label in majority_labels(project=project, split="pool")}
    assert trains == {docs[2].pk: "a", docs[3].pk: "a"}
    everything = majority_labels(project=project, split="pool", hold_flagged=False)
    assert len(everything) == 4  # still the annotators' consensus, for exports and agreement
    assert final_labels(project=project)[docs[0].pk].label == "a"
    rev = UserFactory(username="rev")
    flagged = {i.document_id: i for i in ReviewItem.objects.filter(reason=ReviewReason.NOISE)}
    review_decide(item=flagged[docs[0].pk], reviewer=rev, label="b")  # an override trains as the reviewer said
    trains = {doc_id: label for doc_id, _, label in majority_labels(project=project, split="pool")}
    assert trains == {docs[0].pk: "b", docs[2].pk: "a", docs[3].pk: "a"}
    review_decide(item=flagged[docs[1].pk], reviewer=rev, label="a")  # an accepted label trains again
    trains = {doc_id: label for doc_id, _, label in majority_labels(project=project, split="pool")}
    assert trains == {docs[0].pk: "b", docs[1].pk: "a", docs[2].pk: "a", docs[3].pk: "a"}


def test_reviewers_meet_disagreements_first_then_noise_by_score_and_never_their_own_labels() -> None:
    project, docs = make_project(4)
    label_all(project, {"ann": "a"})
    review_flag(project=project, document_ids=[d.pk for d in docs[:3]], reason="noise", scores=[0.2, 0.9, 0.5])
    disagreement = ReviewItem.objects.create(project=project, document=docs[3], reason=ReviewReason.DISAGREEMENT)
    rev, other = UserFactory(username="rev"), UserFactory(username="rev2")
    assert review_lease_next(project=project, reviewer=rev) == disagreement
    assert review_lease_next(project=project, reviewer=rev) == disagreement  # the one it holds
    assert review_lease_next(project=project, reviewer=other).document_id == docs[1].pk  # highest score
    annotator = _user("ann")
    assert review_lease_next(project=project, reviewer=annotator) is None  # labeled every one of them


def test_a_decision_is_stored_beside_the_labels_and_wins() -> None:
    project, docs = make_project(1, overlap=2)
    label_all(project, {"ann": "a", "bob": "b"})
    rev = UserFactory(username="rev")
    item = review_lease_next(project=project, reviewer=rev)
    decision = review_decide(item=item, reviewer=rev, label="b", comment="b fits the guideline")
    assert (decision.action, decision.replaced_label, decision.replaced_by) == (ReviewAction.ACCEPT, "", "")
    assert sorted(Annotation.objects.values_list("label", flat=True)) == ["a", "b"]  # untouched
    assert majority_labels(project=project, split="pool")[0][2] == "b"
    item.refresh_from_db()
    assert item.state == ReviewState.DECIDED
    with pytest.raises(ReviewClosedError):
        review_decide(item=item, reviewer=rev, label="a")
    # A later flag and an override: the decision replaced says who had decided before.
    review_flag(project=project, document_ids=[docs[0].pk], reason="audit")
    again = review_lease_next(project=project, reviewer=rev)
    override = review_decide(item=again, reviewer=rev, label="c")
    assert (override.action, override.replaced_label, override.replaced_by) == ("override", "b", "reviewer:rev")
    final = final_labels(project=project)[docs[0].pk]
    assert (final.label, final.decided_by, final.reviewer) == ("c", "reviewer", "rev")


def test_bad_decisions_change_nothing() -> None:
    project, docs = make_project(1, overlap=2)
    label_all(project, {"ann": "a", "bob": "b"})
    rev, other = UserFactory(username="rev"), UserFactory(username="rev2")
    item = review_lease_next(project=project, reviewer=rev)
    with pytest.raises(ValidationError) as bad:
        review_decide(item=item, reviewer=rev, label="zebra")
    assert "label" in bad.value.message_dict
    with pytest.raises(ReviewLeasedError):
        review_decide(item=item, reviewer=other, label="a")
    with pytest.raises(ReviewLeasedError):
        review_release(item=item, reviewer=other)
    assert not ReviewDecision.objects.exists()
    with pytest.raises(ValidationError):
        review_comment(item=item, author=other, text="  ")
    review_comment(item=item, author=other, text="looks like b to me")
    review_release(item=item, reviewer=rev)
    assert review_lease_next(project=project, reviewer=other) == item


def test_a_decision_counts_toward_the_retrain_threshold() -> None:
    project, docs = make_project(3, retrain_after=2)
    label_all(project, {"ann": "a"})
    ModelVersionFactory(project=project, version=1, train_label_count=3)
    assert not retrain_due(project)[0]
    review_flag(project=project, document_ids=[d.pk for d in docs[:2]], reason="noise")
    rev = UserFactory(username="rev")
    for _ in range(2):
        review_decide(item=review_lease_next(project=project, reviewer=rev), reviewer=rev, label="b")
    assert retrain_due(project)[0]


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_never_hold_one_item() -> None:
    project, docs = make_project(6)
    label_all(project, {"ann": "a"})
    review_flag(project=project, document_ids=[d.pk for d in docs], reason="noise")
    reviewers = [UserFactory(username=f"rev{i}") for i in range(6)]
    got: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(len(reviewers))

    def lease(user) -> None:
        try:
            start.wait()
            item = review_lease_next(project=project, reviewer=user)
            with lock:
                got.append(item.pk if item else -1)
        finally:
            connection.close()

    threads = [threading.Thread(target=lease, args=(u,)) for u in reviewers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ReviewItem.objects.values_list("pk", flat=True))


def test_decisions_keep_their_item_but_never_block_deleting_the_project_or_document() -> None:
    from django.db.models import RestrictedError

    from labeling.models import Document, Project

    project, docs = make_project(2, overlap=2)
    label_all(project, {"ann": "a", "bob": "b"})
    rev = _user("rev")
    item = ReviewItem.objects.filter(project=project).first()
    review_decide(item=item, reviewer=rev, label="a")
    with pytest.raises(RestrictedError):
        item.delete()  # an audit record keeps what it decided on
    Document.objects.filter(pk=item.document_id).delete()  # the document takes item and decision along
    assert not ReviewDecision.objects.filter(item_id=item.pk).exists()
    other = ReviewItem.objects.filter(project=project).first()
    review_decide(item=other, reviewer=rev, label="b")
    Project.objects.filter(pk=project.pk).delete()
    assert not ReviewDecision.objects.filter(project_id=project.pk).exists()
