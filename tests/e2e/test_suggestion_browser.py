"""Pre-annotations on the labeling page, in real headless Chromium against a live server on PostgreSQL:
an imported model's label shows as a suggestion, one key accepts it, and a holdout item shows none."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from labeling import models as m
from labeling.roles import ANNOTATOR
from labeling.services.imports import import_records
from labeling.services.memberships import membership_ensure
from tests import factories as f
from tests.e2e.test_browser import PASSWORD, login, wait_for_item

pytestmark = [pytest.mark.e2e]


def test_accept_the_imported_suggestion_with_one_key(live_server, browser_page, artifacts_dir: Path) -> None:
    page, base = browser_page, live_server.url
    ann = f.UserFactory(username="ann", password=PASSWORD)
    project = f.ProjectFactory(holdout_fraction=0.0, labels=[{"name": "fresh", "text": "Fresh", "key": "1"},
                                                             {"name": "rotten", "text": "Rotten", "key": "2"}])
    membership_ensure(project=project, user=ann, role=ANNOTATOR)
    import_records(project=project, records=[{"text": "A dull, lifeless remake.", "vendor": "rotten", "p": 0.87}],
                   prediction_col="vendor", prediction_score_col="p")
    doc = m.Document.objects.get(project=project)
    assert not m.Annotation.objects.exists()  # a suggestion is not a label

    login(page, base, "ann")
    page.goto(f"{base}/projects/{project.pk}/label/")
    wait_for_item(page, doc)
    expect(page.locator("#suggestion")).to_be_visible()
    expect(page.locator("#sugg-label")).to_have_text("Rotten")
    expect(page.locator("#sugg-score")).to_contain_text("87")
    page.screenshot(path=str(artifacts_dir / "label-suggestion.png"))
    page.keyboard.press(m.ACCEPT_SUGGESTION_KEY)
    expect(page.locator("#doc-text")).to_contain_text("Nothing left to label")
    annotation = m.Annotation.objects.get(document=doc)
    assert (annotation.annotator, annotation.label, annotation.source) == (ann, "rotten", "ui")


def test_a_holdout_item_shows_no_suggestion(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    ann = f.UserFactory(username="ann", password=PASSWORD)
    project = f.ProjectFactory(holdout_fraction=0.5, holdout_interleave=1.0)
    membership_ensure(project=project, user=ann, role=ANNOTATOR)
    rows = [{"text": f"Review {i}: fine enough.", "vendor": "fresh"} for i in range(40)]
    import_records(project=project, records=rows, prediction_col="vendor")
    login(page, base, "ann")
    page.goto(f"{base}/projects/{project.pk}/label/")
    expect(page.locator("#model-blind")).to_be_visible()
    expect(page.locator("#suggestion")).to_be_hidden()
    page.keyboard.press(m.ACCEPT_SUGGESTION_KEY)  # nothing to accept: no label is given
    expect(page.locator("#model-blind")).to_be_visible()
    assert not m.Annotation.objects.exists()
