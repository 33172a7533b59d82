"""The review page through Django's test client: who may open it, what it is given, where it is linked."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import reverse

from labeling import roles
from labeling.models import ReviewItem, ReviewReason
from labeling.services.memberships import membership_ensure
from tests import factories as f

pytestmark = pytest.mark.django_db


@pytest.fixture
def project():
    project = f.ProjectFactory(
        name="Movie reviews",
        labels=[{"name": "fresh", "text": "Fresh", "key": "1"}, {"name": "rotten", "text": "Rotten", "key": "2"}],
    )
    for role in (roles.MANAGER, roles.REVIEWER, roles.ANNOTATOR, roles.INGEST):
        membership_ensure(project=project, user=f.UserFactory(username=role), role=role)
    return project


def _config(page: str) -> dict:
    found = re.search(r'<script id="review-config" type="application/json">(.*?)</script>', page, re.S)
    assert found, "the page carries its config"
    return json.loads(found.group(1))


@pytest.mark.parametrize(
    "username,status",
    [("reviewer", 200), ("manager", 200), ("annotator", 403), ("ingest", 403), ("outsider", 404)],
)
def test_who_may_open_the_review_page(client, project, username: str, status: int) -> None:
    user = f.UserFactory(username="outsider") if username == "outsider" else None
    client.force_login(user or project.memberships.get(user__username=username).user)
    assert client.get(reverse("ui:review", args=[project.pk])).status_code == status


def test_staff_open_it_and_anonymous_callers_sign_in(client, project) -> None:
    url = reverse("ui:review", args=[project.pk])
    assert client.get(url)["Location"].startswith(reverse("ui:login"))
    client.force_login(f.UserFactory(username="boss", is_staff=True))
    assert client.get(url).status_code == 200
    assert client.get(reverse("ui:review", args=[10**6])).status_code == 404


def test_the_page_has_label_keys_its_config_and_the_queue_counts(client, project) -> None:
    doc = f.DocumentFactory(project=project)
    ReviewItem.objects.create(project=project, document=doc, reason=ReviewReason.DISAGREEMENT)
    client.force_login(project.memberships.get(user__username="reviewer").user)
    page = client.get(reverse("ui:review", args=[project.pk])).content.decode()
    assert 'data-label="fresh" data-key="1"' in page and 'data-label="rotten" data-key="2"' in page
    assert 'aria-keyshortcuts="c"' in page and 'aria-keyshortcuts="s"' in page
    scripts = re.findall(r'<script src="([^"]+)"', page)
    assert any(s.endswith("labeling/review.js") for s in scripts) and all(s.startswith("/static/") for s in scripts)
    config = _config(page)
    assert config["summary"]["open"] == 1 and config["summary"]["open_by_reason"] == {"disagreement": 1}
    assert config["reasons"]["noise"] == "Likely mislabeled" and config["keys"] == {"skip": "s", "comment": "c"}


def test_a_label_keyed_c_moves_the_comment_key_to_0(client) -> None:
    project = f.ProjectFactory(labels=[{"name": "cat", "key": "c"}, {"name": "dog", "key": "d"}])
    client.force_login(f.UserFactory(is_staff=True))
    page = client.get(reverse("ui:review", args=[project.pk])).content.decode()
    assert _config(page)["keys"]["comment"] == "0" and 'aria-keyshortcuts="0"' in page


def test_the_nav_and_project_list_link_it_for_reviewers_only(client, project) -> None:
    review_url = reverse("ui:review", args=[project.pk])
    client.force_login(project.memberships.get(user__username="reviewer").user)
    assert review_url in client.get(reverse("ui:label", args=[project.pk])).content.decode()
    assert review_url in client.get(reverse("ui:dashboard", args=[project.pk])).content.decode()
    assert review_url in client.get(reverse("ui:project-list")).content.decode()
    client.force_login(project.memberships.get(user__username="annotator").user)
    assert review_url not in client.get(reverse("ui:label", args=[project.pk])).content.decode()
    assert review_url not in client.get(reverse("ui:project-list")).content.decode()
