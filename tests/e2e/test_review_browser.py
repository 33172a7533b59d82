"""The review page in real headless Chromium against a live server on PostgreSQL.

Two annotators label through the services with overlap 2 and disagree on one document, which sends
it to review; the reviewer decides it by keyboard on the page and the database shows the decision
beside the annotators' untouched labels.
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
from labeling.services.review import review_flag
from tests import factories as f
from tests.e2e.test_browser import PASSWORD, login

pytestmark = [pytest.mark.e2e]

DISPUTED = "Not a single laugh in two hours, and I have never been happier to be bored: a strange, lovely film."
AGREED = "The plot collapses halfway through and the jokes land with a dull thud."


def build_team_project() -> dict[str, object]:
    """Overlap 2: maria and li label both documents, disagreeing on DISPUTED; AGREED is flagged as noise."""
    project = project_create(
        name="Movie reviews", holdout_fraction=0.0, overlap=2,
        labels=[{"name": "fresh", "text": "Fresh", "key": "1"}, {"name": "rotten", "text": "Rotten", "key": "2"},
                {"name": "mixed", "text": "Mixed", "key": "3"}],
    )
    docs = {d.text: d for d, _ in document_bulk_create(project=project, items=[{"text": DISPUTED}, {"text": AGREED}])}
    champion = f.ModelVersionFactory(project=project, version=3, status=m.ModelStatus.CHAMPION)
    f.PredictionFactory(document=docs[DISPUTED], model_version=champion, probabilities=[0.31, 0.52, 0.17],
                        predicted_label="rotten", confidence=0.52)
    given = {"maria": {DISPUTED: "fresh", AGREED: "rotten"}, "li": {DISPUTED: "rotten", AGREED: "rotten"}}
    for name, labels in given.items():
        annotator = f.UserFactory(username=name)
        membership_ensure(project=project, user=annotator, role=ANNOTATOR)
        while (lease := assignment_next(project=project, annotator=annotator)) is not None:
            annotation_submit(assignment=lease, user=annotator, label=labels[lease.document.text], duration_ms=4000)
    review_flag(project=project, document_ids=[docs[AGREED].pk], reason="noise", scores=[0.912])
    reviewer = f.UserFactory(username="rev", password=PASSWORD)
    membership_ensure(project=project, user=reviewer, role=REVIEWER)
    return {"project": project, "docs": docs, "reviewer": reviewer}


def test_reviewer_overrides_a_disagreement_by_keyboard_and_comments(live_server, browser_page, artifacts_dir) -> None:
    page, base = browser_page, live_server.url
    data = build_team_project()
    project, docs = data["project"], data["docs"]
    disputed = m.ReviewItem.objects.get(document=docs[DISPUTED])
    assert disputed.reason == m.ReviewReason.DISAGREEMENT
    before = sorted(m.Annotation.objects.values_list("document_id", "annotator__username", "label"))

    login(page, base, "rev")
    page.get_by_role("link", name="Review").click()
    # Disagreements come first; the page shows both labels with who gave them, and the model's view.
    expect(page.locator("#doc-id")).to_have_text(f"#{docs[DISPUTED].pk}")
    expect(page.locator("#doc-text")).to_have_text(DISPUTED)
    expect(page.locator("#reason")).to_contain_text("Annotators disagree")
    expect(page.locator("#given-body tr td:nth-child(1)")).to_have_text(["maria", "li"])
    expect(page.locator("#given-body tr td:nth-child(2)")).to_have_text(["Fresh", "Rotten"])
    expect(page.locator("#consensus")).to_contain_text("No consensus: a tie")
    expect(page.locator('[data-given-for="fresh"]')).to_have_text("accept · maria")
    expect(page.locator('[data-given-for="mixed"]')).to_have_text("override")
    expect(page.locator("#pred-label")).to_have_text("Rotten")
    expect(page.locator("#stat-open")).to_have_text("2")

    # c opens the comment box, Enter saves the comment; then 3 overrides with "Mixed".
    page.keyboard.press("c")
    expect(page.locator("#comment-text")).to_be_focused()
    page.keyboard.type("Irony: the critic loved being bored.")
    page.keyboard.press("Enter")
    expect(page.locator("#comments")).to_contain_text("rev: Irony: the critic loved being bored.")
    expect(page.locator("#comment-form")).to_be_hidden()
    page.evaluate("document.activeElement.blur()")  # the picture without a focus ring; keys still work
    page.wait_for_timeout(200)  # let the layout settle before the picture
    page.screenshot(path=str(artifacts_dir / "review.png"), full_page=True)  # docs/img/review.png
    page.keyboard.press("3")

    # The next item: the noise flag with its score. Skipping it leaves nothing to review.
    expect(page.locator("#notices")).to_contain_text("Decided “Mixed” (override)")
    expect(page.locator("#doc-id")).to_have_text(f"#{docs[AGREED].pk}")
    expect(page.locator("#reason")).to_contain_text("Likely mislabeled · score 0.912")
    expect(page.locator("#stat-mine")).to_have_text("1")
    page.keyboard.press("s")
    expect(page.locator("#doc-text")).to_contain_text("Nothing to review right now")
    expect(page.locator("#doc-text")).to_contain_text("You skipped 1 item")
    expect(page.locator(".decide-btn").first).to_be_disabled()

    decision = m.ReviewDecision.objects.get(item=disputed)
    assert (decision.reviewer.username, decision.action, decision.label) == ("rev", "override", "mixed")
    assert m.ReviewComment.objects.get(item=disputed).text == "Irony: the critic loved being bored."
    assert m.ReviewItem.objects.get(pk=disputed.pk).state == m.ReviewState.DECIDED
    flagged = m.ReviewItem.objects.get(document=docs[AGREED])
    assert (flagged.state, flagged.reviewer_id) == (m.ReviewState.OPEN, None)  # skipped: back in the queue
    # The annotators' own labels are as they gave them; the reviewer's decision is the final label.
    assert sorted(m.Annotation.objects.values_list("document_id", "annotator__username", "label")) == before
    final = final_labels(project=project, document_ids=[docs[DISPUTED].pk])[docs[DISPUTED].pk]
    assert (final.label, final.decided_by) == ("mixed", "reviewer")
    assert page.dialogs == [] and page.errors == []


def test_an_empty_review_queue_says_so(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    project = f.ProjectFactory(name="Quiet project")
    reviewer = f.UserFactory(username="rev", password=PASSWORD)
    membership_ensure(project=project, user=reviewer, role=REVIEWER)
    login(page, base, "rev")
    page.goto(f"{base}/projects/{project.pk}/review/")
    expect(page.locator("#doc-text")).to_contain_text("Nothing to review right now")
    expect(page.locator("#comment-btn")).to_be_disabled()
    expect(page.locator("#stat-open")).to_have_text("0")
    page.keyboard.press("1")  # a label key with nothing to decide does nothing
    assert not m.ReviewDecision.objects.exists()
    assert page.dialogs == [] and page.errors == []


def test_a_label_keyed_c_keeps_its_key_and_the_comment_key_steps_aside(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    project = project_create(
        name="Pets", holdout_fraction=0.0, overlap=2,
        labels=[{"name": "cat", "text": "Cat", "key": "c"}, {"name": "dog", "text": "Dog", "key": "d"}],
    )
    [(doc, _)] = document_bulk_create(project=project, items=[{"text": "It purrs, then barks at the mailman."}])
    for name, answer in (("maria", "dog"), ("li", "cat")):
        annotator = f.UserFactory(username=name)
        membership_ensure(project=project, user=annotator, role=ANNOTATOR)
        lease = assignment_next(project=project, annotator=annotator)
        annotation_submit(assignment=lease, user=annotator, label=answer)
    reviewer = f.UserFactory(username="rev", password=PASSWORD)
    membership_ensure(project=project, user=reviewer, role=REVIEWER)

    login(page, base, "rev")
    page.goto(f"{base}/projects/{project.pk}/review/")
    expect(page.locator("#doc-id")).to_have_text(f"#{doc.pk}")
    expect(page.locator("#comment-btn")).to_have_attribute("aria-keyshortcuts", "0")
    expect(page.locator("#comment-btn kbd")).to_have_text("0")
    page.keyboard.press("0")  # the comment key, moved off the label's "c"
    expect(page.locator("#comment-text")).to_be_focused()
    page.keyboard.type("Both, really.")
    page.keyboard.press("Enter")
    expect(page.locator("#comments")).to_contain_text("rev: Both, really.")
    page.keyboard.press("c")  # the label's own key decides it
    expect(page.locator("#notices")).to_contain_text("Decided “Cat” (accept)")
    decision = m.ReviewDecision.objects.get(document=doc)
    assert (decision.reviewer.username, decision.action, decision.label) == ("rev", "accept", "cat")
    assert page.dialogs == [] and page.errors == []
