"""The label-set page in real headless Chromium against a live server on PostgreSQL.

A manager opens it from the dashboard, renames a label and merges two labels; the page shows each
result, the annotations follow, and the open disagreement the merge dissolves is closed.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from labeling import models as m
from labeling.roles import ANNOTATOR, MANAGER
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from labeling.services.review import document_completed
from tests import factories as f
from tests.e2e.test_browser import PASSWORD, login

pytestmark = [pytest.mark.e2e]


def test_a_manager_renames_and_merges_labels_on_the_label_set_page(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    project = project_create(name="Movie reviews", holdout_fraction=0.0, labels=["fresh", "rotten", "meh"])
    ((doc, _),) = document_bulk_create(project=project, items=[{"text": "Not bad, not good, just there."}])
    m.Document.objects.filter(pk=doc.pk).update(labels_required=2, is_labeled=True)
    doc.refresh_from_db()
    membership_ensure(project=project, user=f.UserFactory(username="boss", password=PASSWORD), role=MANAGER)
    for name, answer in (("ann", "rotten"), ("bob", "meh")):
        user = f.UserFactory(username=name, password=PASSWORD)
        membership_ensure(project=project, user=user, role=ANNOTATOR)
        m.Annotation.objects.create(document=doc, annotator=user, label=answer)
    assert document_completed(project=project, document=doc, labels=["rotten", "meh"]) == "disagreement"

    login(page, base, "boss")
    page.goto(f"{base}/projects/{project.pk}/dashboard/")
    page.get_by_role("link", name="Label set").click()
    expect(page.get_by_role("heading", name="Movie reviews label set, version 1")).to_be_visible()

    # Rename rotten -> stale: the row, the annotation and the history follow.
    page.get_by_label("New name for rotten").fill("stale")
    page.get_by_role("button", name="Rename rotten").click()
    expect(page.get_by_role("status")).to_contain_text("Renamed rotten to stale. Label set version 2. 1 labels moved.")
    expect(page.locator("#labels")).to_contain_text("stale")
    expect(page.locator("#labels")).not_to_contain_text("rotten")
    assert sorted(m.Annotation.objects.values_list("label", flat=True)) == ["meh", "stale"]

    # Merge meh into stale: the two annotators now agree, so the open disagreement is closed.
    page.get_by_role("checkbox", name="meh").check()
    page.get_by_label("Into").select_option("stale")
    page.get_by_role("button", name="Merge").click()
    expect(page.get_by_role("status")).to_contain_text("Merged meh into stale. Label set version 3.")
    expect(page.get_by_role("status")).to_contain_text("1 review items closed")
    expect(page.locator("#labels tbody tr")).to_have_count(2)
    expect(page.locator("#labels")).not_to_contain_text("meh")
    expect(page.locator("#labelset-history")).to_contain_text("merge meh → stale")
    project.refresh_from_db()
    assert project.label_names == ["fresh", "stale"] and project.label_set_version == 3
    assert set(m.Annotation.objects.values_list("label", flat=True)) == {"stale"}
    assert m.ReviewItem.objects.get(document=doc).state == m.ReviewState.CLOSED

    # A refused change is explained on the page, and nothing changes.
    page.get_by_label("New name for fresh").fill("stale")
    page.get_by_role("button", name="Rename fresh").click()
    expect(page.get_by_role("alert")).to_contain_text("already a label of this project")
    project.refresh_from_db()
    assert project.label_set_version == 3
