"""Multi-label projects in real headless Chromium: label keys toggle a set, Enter confirms it (none toggled:
"none applies"), undo re-opens a set; a reviewer accepts one annotator's set or decides a toggled set.

The texts are hand-written fixtures in the style of the disaster-messages data set, not data.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling import models as m
from labeling.roles import ANNOTATOR, REVIEWER
from labeling.selectors.consensus import final_labels
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from tests import factories as f
from tests.e2e.test_browser import PASSWORD, login

pytestmark = [pytest.mark.e2e]

LABELS = [
    {"name": "water", "text": "Water", "key": "1"},
    {"name": "food", "text": "Food", "key": "2"},
    {"name": "shelter", "text": "Shelter", "key": "3"},
]
TEXTS = [
    "FIXTURE: no clean water in the camp and the tents blew away last night",
    "FIXTURE: the market reopened this morning",
    "FIXTURE: we need rice for forty families",
]


def _project(**policy):
    return project_create(name="Needs", labels=LABELS, task_type="multi_label", holdout_fraction=0.0, **policy)


def test_label_keys_toggle_a_set_enter_confirms_and_undo_reopens_it(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    project = _project()
    document_bulk_create(project=project, items=[{"text": t} for t in TEXTS])
    user = f.UserFactory(username="ann", password=PASSWORD)
    membership_ensure(project=project, user=user, role=ANNOTATOR)
    login(page, base, "ann")
    page.goto(f"{base}/projects/{project.pk}/label/")
    expect(page.locator(".label-btn").first).to_be_enabled()
    first = page.locator("#doc-text").inner_text()
    expect(page.locator("#set-chosen")).to_contain_text("none applies")
    page.keyboard.press("3")
    page.keyboard.press("1")
    page.keyboard.press("2")
    page.keyboard.press("2")  # a second press toggles Food off again
    expect(page.locator('.label-btn[data-label="water"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator('.label-btn[data-label="shelter"]')).to_have_attribute("aria-pressed", "true")
    expect(page.locator('.label-btn[data-label="food"]')).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#set-chosen")).to_contain_text("Toggled: Water, Shelter")
    assert not m.Annotation.objects.exists()  # toggling saves nothing; Enter does
    page.keyboard.press("Enter")
    expect(page.locator("#notices")).to_contain_text("Saved “Water, Shelter”")
    expect(page.locator("#doc-text")).not_to_have_text(first)
    expect(page.locator(".label-btn").first).to_be_enabled()
    expect(page.locator('.label-btn[data-label="water"]')).to_have_attribute("aria-pressed", "false")
    second = page.locator("#doc-text").inner_text()
    assert second != first
    page.keyboard.press("Enter")  # nothing toggled: "none applies"
    expect(page.locator("#notices")).to_contain_text("Saved “none applies”")
    expect(page.locator("#doc-text")).not_to_have_text(second)

    # Undo re-opens the last item with its (empty) set; toggling Food and Enter changes it.
    page.keyboard.press("u")
    expect(page.locator("#undo-banner")).to_be_visible()
    expect(page.locator("#doc-text")).to_have_text(second)
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    expect(page.locator("#notices")).to_contain_text("from “none applies” to “Food”")
    labels = dict(m.Annotation.objects.values_list("document__text", "label"))
    assert labels == {first: "water,shelter", second: "food"}
    revision = m.AnnotationRevision.objects.get()
    assert (revision.previous_label, revision.new_label) == ("", "food")
    assert page.dialogs == [] and page.errors == []


def test_a_reviewer_accepts_one_annotators_set_and_decides_a_toggled_set(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    project = _project(overlap=2)
    docs = [d for d, _ in document_bulk_create(project=project, items=[{"text": t} for t in TEXTS[:2]])]
    given = {"maria": {TEXTS[0]: ["water", "shelter"], TEXTS[1]: []}, "li": {TEXTS[0]: ["water"], TEXTS[1]: ["food"]}}
    for name, answers in given.items():
        annotator = f.UserFactory(username=name)
        membership_ensure(project=project, user=annotator, role=ANNOTATOR)
        while (lease := assignment_next(project=project, annotator=annotator)) is not None:
            annotation_submit(assignment=lease, user=annotator, labels=answers[lease.document.text])
    assert m.ReviewItem.objects.filter(reason=m.ReviewReason.DISAGREEMENT).count() == 2
    reviewer = f.UserFactory(username="rev", password=PASSWORD)
    membership_ensure(project=project, user=reviewer, role=REVIEWER)
    login(page, base, "rev")
    page.goto(f"{base}/projects/{project.pk}/review/")

    expect(page.locator("#doc-text")).to_have_text(TEXTS[0])
    expect(page.locator(".decide-btn").first).to_be_enabled()
    expect(page.locator("#given-body tr td:nth-child(2)")).to_have_text(["Water, Shelter", "Water"])
    expect(page.locator('[data-given-for="water"]')).to_have_text("in 2 of 2 sets")
    expect(page.locator('[data-given-for="food"]')).to_have_text("in no set")
    page.locator("#given-body tr").first.get_by_role("button", name="Accept this set").click()
    expect(page.locator("#notices")).to_contain_text("Decided “Water, Shelter” (accept)")

    expect(page.locator("#doc-text")).to_have_text(TEXTS[1])
    expect(page.locator("#given-body tr td:nth-child(2)")).to_have_text(["none applies", "Food"])
    expect(page.locator(".decide-btn").first).to_be_enabled()
    page.keyboard.press("2")
    page.keyboard.press("3")
    expect(page.locator('.decide-btn[data-label="shelter"]')).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("Enter")
    expect(page.locator("#notices")).to_contain_text("Decided “Food, Shelter” (override)")

    finals = final_labels(project=project)
    assert (finals[docs[0].pk].label, finals[docs[0].pk].decided_by) == ("water,shelter", "reviewer")
    assert (finals[docs[1].pk].label, finals[docs[1].pk].decided_by) == ("food,shelter", "reviewer")
    assert page.dialogs == [] and page.errors == []


def test_the_dashboard_shows_per_label_counts_agreement_and_the_models_figures(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    project = _project(overlap=2)
    document_bulk_create(project=project, items=[{"text": t} for t in TEXTS])
    given = {
        "maria": {TEXTS[0]: ["water", "shelter"], TEXTS[1]: [], TEXTS[2]: ["food"]},
        "li": {TEXTS[0]: ["water"], TEXTS[1]: [], TEXTS[2]: ["food"]},
    }
    for name, answers in given.items():
        annotator = f.UserFactory(username=name)
        membership_ensure(project=project, user=annotator, role=ANNOTATOR)
        while (lease := assignment_next(project=project, annotator=annotator)) is not None:
            annotation_submit(assignment=lease, user=annotator, labels=answers[lease.document.text])
    # What a multi-label training run records (the model side writes these; written here by hand).
    f.ModelVersionFactory(
        project=project,
        version=2,
        status=m.ModelStatus.CHAMPION,
        label_map=["water", "food", "shelter"],
        metrics={
            "micro_f1": 0.71,
            "macro_f1": 0.64,
            "subset_accuracy": 0.42,
            "per_label": {"water": {"f1": 0.8}, "food": {"f1": 0.66}, "shelter": {"f1": 0.46}},
        },
    )
    f.UserFactory(username="boss", password=PASSWORD, is_staff=True)
    login(page, base, "boss")
    page.goto(f"{base}/projects/{project.pk}/dashboard/")
    expect(page.locator("#ml-body tr td:nth-child(1)")).to_have_text(["water", "food", "shelter"])
    expect(page.locator("#ml-body tr td:nth-child(2)")).to_have_text(["2", "2", "1"])
    expect(page.locator("#ml-body tr td:nth-child(5)")).to_have_text(["80.0%", "66.0%", "46.0%"])
    expect(page.locator("#ml-model")).to_contain_text("micro-F1 71.0%")
    expect(page.locator("#ml-model")).to_contain_text("subset accuracy 42.0%")
    expect(page.locator("#ml-none")).to_contain_text("2 answers in the pool")
    expect(page.locator("#agreement-body")).to_contain_text("alpha on whole sets (MASI distance)")
    assert page.dialogs == [] and page.errors == []
