"""The dashboard's team panels in real headless Chromium against a live server on PostgreSQL.

Two annotators label twelve documents with overlap 2 (they disagree on two), a reviewer decides one
disagreement and overrides a label the noise loop flagged: the manager's dashboard shows the team
policy, the agreement figures with their intervals, the review counts and each annotator's quality;
an annotator's dashboard has the team panel but no quality panel, and its JSON has no quality either.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling import models as m
from labeling.roles import ANNOTATOR, MANAGER, REVIEWER
from labeling.selectors import dashboard as dash
from labeling.services.annotations import annotation_submit
from labeling.services.assignments import assignment_next
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from labeling.services.review import review_decide, review_flag
from tests import factories as f
from tests.e2e.test_browser import PASSWORD, login

pytestmark = [pytest.mark.e2e]

GOLD = ["fresh", "rotten"] * 6
LI_DIFFERS = {3, 8}  # li gives the other label on these two documents


def build_team() -> dict[str, object]:
    project = project_create(
        name="Team reviews", holdout_fraction=0.0, overlap=2, noise_review_share=0.2,
        labels=[{"name": "fresh", "text": "Fresh", "key": "1"}, {"name": "rotten", "text": "Rotten", "key": "2"}],
    )
    items = [{"text": f"Snippet {i}: a {gold} review."} for i, gold in enumerate(GOLD)]
    docs = [d for d, _ in document_bulk_create(project=project, items=items)]
    for doc, gold in zip(docs, GOLD, strict=True):  # gold labels, as an import with a gold column sets them
        m.Document.objects.filter(pk=doc.pk).update(gold_label=gold)
    index = {d.pk: i for i, d in enumerate(docs)}
    for name in ("maria", "li"):
        user = f.UserFactory(username=name, password=PASSWORD)
        membership_ensure(project=project, user=user, role=ANNOTATOR)
        while (lease := assignment_next(project=project, annotator=user)) is not None:
            i = index[lease.document_id]
            label = GOLD[i] if name == "maria" or i not in LI_DIFFERS else ("rotten" if GOLD[i] == "fresh" else "fresh")
            annotation_submit(assignment=lease, user=user, label=label, duration_ms=3000)
    reviewer = f.UserFactory(username="rev")
    membership_ensure(project=project, user=reviewer, role=REVIEWER)
    disagreement = m.ReviewItem.objects.get(document=docs[3])
    review_decide(item=disagreement, reviewer=reviewer, label=GOLD[3])
    review_flag(project=project, document_ids=[docs[0].pk], reason="noise", scores=[0.9])
    review_decide(item=m.ReviewItem.objects.get(document=docs[0], state="open"), reviewer=reviewer, label="rotten")
    boss = f.UserFactory(username="boss", password=PASSWORD)
    membership_ensure(project=project, user=boss, role=MANAGER)
    return {"project": project, "boss": boss}


def test_the_manager_sees_agreement_review_and_quality_and_an_annotator_no_quality(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    data = build_team()
    project = data["project"]
    expected = dash.dashboard(project=project, user=data["boss"], include_quality=True)
    alpha = expected["team"]["agreement"]["alpha"]
    assert expected["team"]["agreement"]["enough"] and alpha["n_items"] == 12

    login(page, base, "boss")
    page.goto(f"{base}/projects/{project.pk}/dashboard/")
    expect(page.locator("#team-policy")).to_have_text(
        "Overlap 2 (all), consensus needs 50% agreement; the top 20% of each run's labels by likely error go "
        "to review and keep training until decided."
    )
    first = page.locator("#agreement-body tr").first.locator("td")
    expect(first).to_have_text([
        "Krippendorff's alpha", f"{alpha['value']:.2f}", f"{alpha['low']:.2f} – {alpha['high']:.2f}", "12",
    ])
    names = ["Krippendorff's alpha", "Fleiss' kappa"]
    names += [f"alpha, label {name}" for name in expected["team"]["agreement"]["per_label"]]
    expect(page.locator("#agreement-body tr td:nth-child(1)")).to_have_text(names)
    expect(page.locator("#review-summary")).to_have_text(
        "Review: 1 open, 2 decided, 1 changed a label; 1 flagged as likely mislabeled."
    )
    expect(page.locator("#quality-body tr")).to_have_count(2)
    quality = {p["annotator"]: p for p in expected["quality"]["annotators"]}
    assert set(quality) == {"maria", "li"}
    for name, p in quality.items():
        row = page.locator("#quality-body tr", has=page.locator("td", has_text=name))
        gold = p["vs_gold"]
        expect(row.locator("td")).to_have_text([
            name, "12", f"{round(100 * p['vs_consensus']['accuracy']['value'])}% (n {p['vs_consensus']['n_items']})",
            f"{round(100 * p['vs_reviewers']['accuracy']['value'])}% (n {p['vs_reviewers']['n_items']})",
            f"{round(100 * gold['accuracy']['value'])}% (n 12)", "3.0 s",
        ])
    assert quality["maria"]["vs_gold"]["accuracy"]["value"] == 1.0
    assert quality["li"]["vs_gold"]["accuracy"]["value"] == pytest.approx(10 / 12)
    assert page.dialogs == [] and page.errors == []

    page.get_by_role("button", name="Sign out").click()
    login(page, base, "li")
    page.goto(f"{base}/projects/{project.pk}/dashboard/")
    expect(page.locator("#review-summary")).to_contain_text("2 decided")
    expect(page.locator("#agreement-body tr")).to_have_count(len(names))
    expect(page.locator("#quality-h")).to_have_count(0)
    expect(page.locator("#quality-body")).to_have_count(0)
    own = page.request.get(f"{base}/ui/projects/{project.pk}/dashboard.json")
    assert own.ok and "quality" not in own.json()
    assert page.dialogs == [] and page.errors == []
