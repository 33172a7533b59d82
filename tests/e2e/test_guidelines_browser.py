"""Guidelines and flags in real headless Chromium against a live server on PostgreSQL.

A manager writes guidelines (with a script tag and a javascript: link in them) on the dashboard; they
open with ? on the labeling page and on the review page, sanitised; the annotator flags an item by
keyboard with a comment, and the reviewer meets it in the review queue with the flag and the comment.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling import models as m
from labeling.roles import ANNOTATOR, MANAGER, REVIEWER
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from tests import factories as f
from tests.e2e.test_browser import PASSWORD, login

pytestmark = [pytest.mark.e2e]

GUIDELINES = """## How we label

A review is **fresh** when the critic recommends the film, even with reservations.

<script>window.pwned = 1</script>

<img src="/nowhere.png" onerror="window.pwned = 2">

[a trap](javascript:window.pwned=3) and [the style guide](https://example.org/style)
"""
TEXTS = ["A slur-laden rant about the director's family, not the film.", "Warm, funny and far too short."]


def test_guidelines_open_by_key_and_a_flag_reaches_the_review_queue(live_server, browser_page, artifacts_dir) -> None:
    page, base = browser_page, live_server.url
    console_errors: list[str] = []
    page.on("console", lambda msg: console_errors.append(msg.text) if msg.type == "error" else None)
    project = project_create(
        name="Movie reviews", holdout_fraction=0.0, holdout_interleave=0.0,
        labels=[{"name": "fresh", "text": "Fresh", "key": "1"}, {"name": "rotten", "text": "Rotten", "key": "2"}],
    )
    document_bulk_create(project=project, items=[{"text": t} for t in TEXTS])
    for name, role in (("boss", MANAGER), ("ann", ANNOTATOR), ("rev", REVIEWER)):
        membership_ensure(project=project, user=f.UserFactory(username=name, password=PASSWORD), role=role)

    # The manager writes them on the dashboard.
    login(page, base, "boss")
    page.goto(f"{base}/projects/{project.pk}/dashboard/")
    page.get_by_label("The guidelines").fill(GUIDELINES)
    page.get_by_label("Notes and examples for “Rotten”").fill("Pans, *including* faint praise.")
    page.get_by_role("button", name="Save the guidelines").click()
    expect(page.locator("#guidelines-status")).to_contain_text("Saved")
    project.refresh_from_db()
    assert project.guidelines == GUIDELINES
    assert project.label_guidelines == {"rotten": "Pans, *including* faint praise."}
    assert m.AuditEvent.objects.get(action="guidelines.updated").actor_name == "boss"

    page.context.clear_cookies()
    login(page, base, "ann")
    page.goto(f"{base}/projects/{project.pk}/label/")
    expect(page.locator("#doc-text")).not_to_have_text("Loading the next item…")
    first_text = page.locator("#doc-text").inner_text()
    panel = page.locator("#guidelines-panel")
    expect(panel).to_be_hidden()
    page.keyboard.press("?")
    expect(panel).to_be_visible()
    expect(panel).to_be_focused()
    expect(panel.get_by_role("heading", name="How we label")).to_be_visible()
    expect(panel.locator("strong")).to_have_text("fresh")
    expect(panel.locator(".label-notes dd").nth(1)).to_contain_text("Pans, including faint praise.")
    expect(panel.get_by_role("link", name="the style guide")).to_have_attribute("href", "https://example.org/style")
    assert panel.locator("script, img, [onerror], a[href^='javascript']").count() == 0
    page.screenshot(path=str(artifacts_dir / "guidelines.png"))
    page.keyboard.press("?")
    expect(panel).to_be_hidden()
    page.keyboard.press("?")
    expect(panel).to_be_visible()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()

    # ! opens the flag form; 2 picks "offensive"; Tab reaches the comment; Enter sends it.
    page.keyboard.press("!")
    expect(page.locator("#flag-form")).to_be_visible()
    page.keyboard.press("2")
    expect(page.locator("input[name=flag-kind][value=offensive]")).to_be_checked()
    page.keyboard.press("Tab")
    expect(page.locator("#flag-comment")).to_be_focused()
    page.keyboard.type("Abuse, not a review.")
    page.keyboard.press("Enter")
    expect(page.locator("#notices")).to_contain_text("as offensive: it is in the review queue")
    expect(page.locator("#flag-form")).to_be_hidden()
    expect(page.locator("#doc-text")).not_to_have_text(first_text)

    flagged = m.Document.objects.get(text=first_text)
    flag = m.DocumentFlag.objects.get()
    assert (flag.document_id, flag.kind, flag.author.username) == (flagged.pk, "offensive", "ann")
    assert flag.comment is not None and flag.comment.text == "Abuse, not a review."
    assert (flag.item.reason, flag.item.state) == (m.ReviewReason.FLAG, m.ReviewState.OPEN)

    page.context.clear_cookies()
    login(page, base, "rev")
    page.goto(f"{base}/projects/{project.pk}/review/")
    expect(page.locator("#doc-text")).to_have_text(first_text)
    expect(page.locator("#reason")).to_contain_text("Flagged by an annotator: offensive (ann)")
    expect(page.locator("#comments")).to_contain_text("Abuse, not a review.")
    page.keyboard.press("?")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("heading", name="How we label")).to_be_visible()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    page.keyboard.press("2")  # decide "Rotten": the flag's item leaves the queue
    expect(page.locator("#notices")).to_contain_text("Decided “Rotten”")
    assert m.ReviewItem.objects.get(pk=flag.item_id).state == m.ReviewState.DECIDED

    assert page.evaluate("window.pwned === undefined")
    assert page.dialogs == [] and page.errors == []
    assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
