"""What the review page needs of the review API: renew a hold (its holder only), pass over skipped items."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from labeling import roles
from labeling.models import ReviewItem, ReviewReason
from labeling.services.memberships import membership_ensure
from tests import factories as f
from tests.labeling.api.conftest import token_client

pytestmark = pytest.mark.django_db


def _reviewer(project, name: str):
    user = f.UserFactory(username=name)
    membership_ensure(project=project, user=user, role=roles.REVIEWER)
    return token_client(user)


def test_the_holder_renews_others_and_decided_items_are_409(project) -> None:
    doc = f.DocumentFactory(project=project)
    f.AnnotationFactory(document=doc, annotator=f.UserFactory(username="x1"), label="fresh")
    item = ReviewItem.objects.create(project=project, document=doc, reason=ReviewReason.AUDIT)
    rev, other = _reviewer(project, "rev"), _reviewer(project, "rev2")
    base = f"/api/v1/projects/{project.pk}/review"

    not_held = rev.post(f"{base}/items/{item.pk}/renew")
    assert not_held.status_code == 409 and not_held.json()["error"]["code"] == "review_leased"

    assert rev.post(f"{base}/next").json()["id"] == item.pk
    ReviewItem.objects.filter(pk=item.pk).update(leased_until=timezone.now() + timedelta(seconds=5))
    renewed = rev.post(f"{base}/items/{item.pk}/renew")
    assert renewed.status_code == 200
    held_until = ReviewItem.objects.get(pk=item.pk).leased_until
    assert held_until > timezone.now() + timedelta(minutes=project.lease_minutes - 1)

    taken = other.post(f"{base}/items/{item.pk}/renew")
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "review_leased"
    assert ReviewItem.objects.get(pk=item.pk).leased_until == held_until  # nothing changed

    assert rev.post(f"{base}/items/{item.pk}/decision", {"label": "fresh"}, format="json").status_code == 201
    closed = rev.post(f"{base}/items/{item.pk}/renew")
    assert closed.status_code == 409 and closed.json()["error"]["code"] == "not_in_review"


def test_next_passes_over_excluded_items_and_refuses_a_bad_list(project) -> None:
    items = []
    for name in ("x1", "x2"):
        doc = f.DocumentFactory(project=project)
        f.AnnotationFactory(document=doc, annotator=f.UserFactory(username=name), label="fresh")
        items.append(ReviewItem.objects.create(project=project, document=doc, reason=ReviewReason.AUDIT))
    rev = _reviewer(project, "rev")
    base = f"/api/v1/projects/{project.pk}/review"
    first = rev.post(f"{base}/next").json()["id"]
    assert first == items[0].pk
    assert rev.post(f"{base}/items/{first}/release").status_code == 200
    assert rev.post(f"{base}/next", {"exclude": [first]}, format="json").json()["id"] == items[1].pk
    assert rev.post(f"{base}/items/{items[1].pk}/release").status_code == 200
    assert rev.post(f"{base}/next", {"exclude": [i.pk for i in items]}, format="json").status_code == 204
    bad = rev.post(f"{base}/next", {"exclude": "all"}, format="json")
    assert bad.status_code == 400 and "exclude" in bad.json()["error"]["fields"]
    assert ReviewItem.objects.filter(reviewer__isnull=False).count() == 0  # the refusals leased nothing
