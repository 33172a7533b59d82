"""A run's ranking applied to the review queue: new flags open, doubted ones stay, the rest are released."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling.models import AuditEvent, ReviewItem, ReviewReason, ReviewState
from labeling.selectors.consensus import flagged_pending
from labeling.selectors.review import review_summary
from labeling.services.review import review_flag
from labeling.services.training.label_issues import label_issues_flag, noise_flags_leased
from tests.factories import ModelVersionFactory, UserFactory
from tests.labeling.services.test_review import label_all, make_project

pytestmark = pytest.mark.django_db


def test_a_run_releases_the_waiting_flags_it_no_longer_doubts_and_keeps_a_leased_one() -> None:
    project, docs = make_project(6)
    label_all(project, {"ann": "a"})
    d = [doc.pk for doc in docs]
    review_flag(project=project, document_ids=d[:3], reason=ReviewReason.NOISE, scores=[0.9, 0.8, 0.7])
    reviewer = UserFactory(username="rev")
    ReviewItem.objects.filter(document_id=d[2]).update(
        reviewer=reviewer, leased_until=timezone.now() + timedelta(minutes=5)
    )
    assert noise_flags_leased(project=project) == {d[2]}
    run = ModelVersionFactory(project=project, version=7)
    # the newest run still doubts d[0] (now less), newly doubts d[3], and no longer doubts d[1] or d[2]
    issues = {"document_ids": [d[3], d[0]], "scores": [0.05, 0.4], "released": [d[1], d[2]]}
    opened = label_issues_flag(project=project, issues=issues, model_version=run)
    assert opened == 1
    assert flagged_pending(project=project) == {d[0], d[2], d[3]}  # the leased one stays for its reviewer
    assert issues["released"] == [d[1]]
    released = ReviewItem.objects.get(document_id=d[1], reason=ReviewReason.NOISE)
    assert released.state == ReviewState.RELEASED and released.decided_at is not None
    assert ReviewItem.objects.get(document_id=d[0], state=ReviewState.OPEN).score == pytest.approx(0.6)
    (event,) = AuditEvent.objects.filter(project_id=project.pk, action="review.released")
    assert event.data["documents"] == [d[1]] and event.target_type == "model_version"
    assert event.target_id == str(run.pk) and event.actor_id is None
    summary = review_summary(project=project)
    assert summary["flagged_noise"] == 4 and summary["released_noise"] == 1 and summary["open"] == 3
    # a released document can be flagged again by a later run
    again = {"document_ids": [d[1]], "scores": [0.1], "released": []}
    assert label_issues_flag(project=project, issues=again, model_version=run) == 1
    assert d[1] in flagged_pending(project=project)
    assert AuditEvent.objects.filter(project_id=project.pk, action="review.released").count() == 1
