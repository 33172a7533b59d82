"""A large project's dashboard in real headless Chromium: the prediction figures come from a page sample
(labeling/selectors/poolsample.py) and the page says they are estimates; a small project's page does not."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from labeling.roles import MANAGER
from labeling.services.memberships import membership_ensure
from tests import factories as f
from tests.e2e.test_browser import PASSWORD, login

pytestmark = [pytest.mark.e2e]


def test_a_sampled_dashboard_says_its_bars_are_estimates(live_server, browser_page, settings) -> None:
    settings.POOL_FIGURES_EXACT_MAX_DOCUMENTS = 100
    settings.POOL_FIGURES_SAMPLE_DOCUMENTS = 500  # 4,000 documents: about an eighth of them drawn
    page, base = browser_page, live_server.url
    large, _ = f.bulk_scored_project(4000, champion_labels=("fresh", "rotten"))
    small, _ = f.bulk_scored_project(600, champion_labels=("fresh", "rotten"))  # under twice the sample: exact
    boss = f.UserFactory(username="boss", password=PASSWORD)
    for project in (large, small):
        membership_ensure(project=project, user=boss, role=MANAGER)

    login(page, base, "boss")
    page.goto(f"{base}/projects/{large.pk}/dashboard/")
    estimated = re.compile(r"Estimated from a random sample of [\d,]+ of 4,000")
    expect(page.locator("#hist-caption")).to_contain_text(estimated)
    expect(page.locator("#coverage-line")).to_contain_text("estimated from the same sample")
    expect(page.locator("#coverage-line")).to_contain_text("(100%)")

    page.goto(f"{base}/projects/{small.pk}/dashboard/")
    expect(page.locator("#coverage-line")).to_contain_text("has scored 540 of 540 pool documents")
    expect(page.locator("#hist-caption")).not_to_contain_text("sample")
    assert page.errors == []
