"""The annotator UI and dashboard in real headless Chromium against a live server on PostgreSQL.

The model is not the point here: the champion, its predictions (with map points and stored token
attributions) and its metrics come from factories, so every chart has something to draw.
"""

from __future__ import annotations

import math
import random
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from labeling import models as m
from labeling.roles import ANNOTATOR
from labeling.services.memberships import membership_ensure
from tests import factories as f

pytestmark = [pytest.mark.e2e]

PASSWORD = "pw-for-tests"
XSS = "<script>alert(1)</script>"
REVIEWS = [
    XSS,
    "A gorgeous, patient film that trusts its audience and rewards every minute of attention.",
    "The plot collapses halfway through and the jokes land with a dull thud.",
    "Sharp writing, a terrific lead performance, and a final scene that stays with you.",
    "Overlong, overwrought and oddly lifeless despite the talented cast.",
    "An uneven but often charming comedy that knows exactly what it wants to be.",
    "Nothing here you have not seen done better a dozen times before.",
]


def _reliability(shift: float) -> list[dict[str, float]]:
    bins = []
    for i in range(10):
        conf = i / 10 + 0.05
        bins.append({"lower": i / 10, "upper": (i + 1) / 10, "count": 4 + i * 3, "confidence": conf,
                     "accuracy": max(0.0, min(1.0, conf - shift * conf * (1 - conf) * 4))})
    return bins


def _metrics(acc: float, f1: float, ece: float, ece_u: float) -> dict[str, object]:
    return {"accuracy": acc, "macro_f1": f1, "ece": ece, "ece_uncalibrated": ece_u, "nll": 0.41,
            "brier": 0.27, "auroc_error": 0.74, "holdout_count": 60, "reliability": _reliability(0.02),
            "reliability_uncalibrated": _reliability(0.3)}


def build_project(*, extra_pool: int = 300) -> dict[str, object]:
    """Annotator "ann", colleagues with earlier labels, a champion v3 and its predictions."""
    rng = random.Random(7)
    ann = f.UserFactory(username="ann", password=PASSWORD)
    project = f.ProjectFactory(
        name="Movie reviews", description="Is the critic's snippet fresh or rotten?", holdout_interleave=0.0,
        acquisition_strategy=m.AcquisitionStrategy.BALD,
        labels=[{"name": "fresh", "text": "Fresh", "key": "1"},
                {"name": "rotten", "text": "Rotten", "key": "2"}],
    )
    membership_ensure(project=project, user=ann, role=ANNOTATOR)
    now = timezone.now()
    for version, labels, acc, f1 in [(1, 40, 0.66, 0.61), (2, 80, 0.74, 0.72)]:
        mv = f.ModelVersionFactory(project=project, version=version, status=m.ModelStatus.RETIRED,
                                   train_label_count=labels, metrics=_metrics(acc, f1, 0.05, 0.12),
                                   created_at=now - timedelta(hours=6 - version))
        m.TrainingRun.objects.create(
            project=project, trigger=m.RunTrigger.THRESHOLD, status=m.RunStatus.SUCCEEDED, stage="done",
            progress=1.0, labels_used=labels, model_version=mv, promoted=True,
            decision_reason="first model" if version == 1 else "holdout accuracy 0.74 vs 0.66: better",
        )
    champion = f.ModelVersionFactory(
        project=project, version=3, status=m.ModelStatus.CHAMPION, train_label_count=120,
        metrics=_metrics(0.81, 0.80, 0.031, 0.118), created_at=now - timedelta(minutes=40), promoted_at=now,
    )
    m.TrainingRun.objects.create(
        project=project, trigger=m.RunTrigger.THRESHOLD, status=m.RunStatus.SUCCEEDED, stage="done",
        progress=1.0, labels_used=120, model_version=champion, promoted=True,
        decision_reason="holdout accuracy 0.81 vs 0.74 (tolerance 0.01): promoted",
    )
    # The seven documents the test labels, best acquisition score first, then a larger pool.
    docs = [m.Document(project=project, text=t, content_hash=m.text_hash(t)) for t in REVIEWS]
    extra = [f"Review snippet {i}: " + rng.choice(["warm", "tedious", "clever", "flat", "bold"]) + " and "
             + rng.choice(["moving", "forgettable", "funny", "muddled"]) + "." for i in range(extra_pool)]
    docs += [m.Document(project=project, text=t, content_hash=m.text_hash(t), is_labeled=i < 45)
             for i, t in enumerate(extra)]
    holdout = [f"Held-out snippet {i}: " + rng.choice(["lively", "dreary", "smart", "stale"]) + "."
               for i in range(30)]
    docs += [m.Document(project=project, text=t, content_hash=m.text_hash(t), split=m.Split.HOLDOUT,
                        is_labeled=i < 20) for i, t in enumerate(holdout)]
    docs = m.Document.objects.bulk_create(docs)
    preds = []
    for i, doc in enumerate(docs):
        cluster = i % 2
        p_fresh = rng.betavariate(5, 2) if cluster == 0 else rng.betavariate(2, 5)
        conf = max(p_fresh, 1 - p_fresh)
        ent = -sum(p * math.log(p) for p in (p_fresh, 1 - p_fresh) if p > 0)
        mi = ent * rng.uniform(0.05, 0.4)
        preds.append(m.Prediction(
            document=doc, model_version=champion, probabilities=[p_fresh, 1 - p_fresh],
            predicted_label="fresh" if p_fresh >= 0.5 else "rotten", confidence=conf, entropy=ent,
            expected_entropy=ent - mi, mutual_info=mi, margin=abs(2 * p_fresh - 1),
            acquisition_score=10.0 - i if i < len(REVIEWS) else mi,
            map_x=rng.gauss(-2 if cluster == 0 else 2, 1.0) if i else -6.0,
            map_y=rng.gauss(0.5 if cluster == 0 else -0.5, 1.0) if i else -4.0,
            attributions=[[w, rng.uniform(-0.2, 0.6)] for w in doc.text.split()[:40]],
        ))
    m.Prediction.objects.bulk_create(preds)
    # Colleagues' earlier labels, spread over the last hours, for the annotator table and chart.
    labeled = docs[len(REVIEWS):][:45]
    midnight = timezone.localtime(now).replace(hour=0, minute=0, second=1, microsecond=0)
    for name, share in [("maria", labeled[:27]), ("li", labeled[27:])]:
        colleague = f.UserFactory(username=name)
        membership_ensure(project=project, user=colleague, role=ANNOTATOR)
        for k, doc in enumerate(share):
            m.Annotation.objects.create(
                document=doc, annotator=colleague, label=rng.choice(["fresh", "rotten"]), source="ui",
                duration_ms=rng.randint(2500, 9000),
                created_at=max(midnight, now - timedelta(minutes=13 * k + 5)),  # "today", whenever it runs
            )
    return {"user": ann, "project": project, "champion": champion, "docs": docs[: len(REVIEWS)]}


def login(page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()


def eventually(check, timeout: float = 5.0) -> None:
    """For effects the browser sends without a page to wait on (a beacon on leaving)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the expected change did not happen in time"
        time.sleep(0.1)


def wait_for_item(page, doc: m.Document) -> None:
    expect(page.locator("#doc-id")).to_have_text(f"#{doc.pk}")


def test_label_skip_undo_and_dashboard(live_server, browser_page, artifacts_dir: Path) -> None:
    page, base = browser_page, live_server.url
    data = build_project()
    project, docs, user = data["project"], data["docs"], data["user"]

    login(page, base, "ann")
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#c-labeled")).to_have_text("65")  # 45 pool + 20 holdout
    # Annotators see no admin actions.
    expect(page.get_by_role("button", name="Start a retrain")).to_have_count(0)

    page.goto(f"{base}/")
    page.get_by_role("link", name="Start labeling").click()

    # The first item is the script-tag document: shown as text, never run.
    wait_for_item(page, docs[0])
    expect(page.locator("#doc-text")).to_have_text(XSS)
    expect(page.locator("#pred-label")).to_be_visible()
    expect(page.locator("#attr-tokens .tok").first).to_be_visible()
    assert page.locator("#doc-text script").count() == 0

    # Five labels by keyboard: 1 fresh, 2 rotten.
    keys = ["1", "2", "1", "2", "1"]
    for doc, key in zip(docs[:5], keys, strict=True):
        wait_for_item(page, doc)
        page.keyboard.press(key)
    wait_for_item(page, docs[5])
    expect(page.locator("#stat-mine")).to_have_text("5")
    expect(page.locator("#stat-team")).to_have_text("50")  # colleagues' 45 today, and these 5

    # Skip the sixth; undo re-opens the fifth (labeled fresh) and relabels it rotten.
    page.keyboard.press("s")
    wait_for_item(page, docs[6])
    page.keyboard.press("u")
    wait_for_item(page, docs[4])
    expect(page.locator("#undo-banner")).to_be_visible()
    expect(page.locator("#undo-was")).to_have_text("Fresh")
    page.keyboard.press("2")
    wait_for_item(page, docs[6])
    expect(page.locator("#undo-banner")).to_be_hidden()
    expect(page.locator("#notices")).to_contain_text("from “Fresh” to “Rotten”")
    expect(page.locator("#attr-tokens .tok").first).to_be_visible()
    page.screenshot(path=str(artifacts_dir / "labeling.png"), full_page=True)

    stored = {a.document_id: a for a in m.Annotation.objects.filter(annotator=user)}
    expected = ["fresh", "rotten", "fresh", "rotten", "rotten"]  # the fifth relabeled by the undo
    assert {d: a.label for d, a in stored.items()} == {
        d.pk: lab for d, lab in zip(docs, expected, strict=False)
    }
    assert all(a.source == "ui" and a.duration_ms is not None for a in stored.values())
    revision = m.AnnotationRevision.objects.get(annotation__annotator=user)
    assert (revision.annotation.document_id, revision.previous_label, revision.new_label) == (
        docs[4].pk, "fresh", "rotten")
    assert m.Assignment.objects.get(document=docs[5], annotator=user).state == m.AssignmentState.SKIPPED
    assert m.Assignment.objects.get(document=docs[6], annotator=user).state == m.AssignmentState.ACTIVE

    # The dashboard counts the new labels, and its charts and map are drawn.
    page.get_by_role("link", name="Dashboard").click()
    expect(page.locator("#c-labeled")).to_have_text("70")
    expect(page.locator("#c-model")).to_have_text("v3")
    expect(page.locator("#people-body")).to_contain_text("ann")
    expect(page.locator("#learning-curve svg circle")).to_have_count(6)
    expect(page.locator("#reliability svg rect[opacity]")).to_have_count(20)
    expect(page.locator("#cal-summary")).to_contain_text("0.118 before calibration, 0.031 after")
    # 60 holdout items: each figure comes with its interval and n, and the page says it is too few to judge.
    expect(page.locator("#cal-summary")).to_contain_text("fewer than 100: too few to judge the calibration")
    expect(page.locator("#c-acc-note")).to_contain_text("n 60 · too few to judge")
    expect(page.locator("#runs-body tr").first).to_contain_text("81.0% (70%–89%) n 60, too few to judge")
    expect(page.locator("#runs-body tr")).to_have_count(3)
    page.get_by_label("uncertainty", exact=True).check()
    expect(page.locator("#map-legend")).to_contain_text("most unsure")
    page.get_by_label("predicted label", exact=True).check()
    expect(page.locator("#map-legend")).to_contain_text("predicted fresh")
    page.wait_for_timeout(300)  # let the canvas settle before the picture
    page.screenshot(path=str(artifacts_dir / "dashboard.png"), full_page=True)

    # The lease of the item left open is released when the page goes away.
    left_open = m.Assignment.objects.get(document=docs[6], annotator=user)
    eventually(lambda: m.Assignment.objects.get(pk=left_open.pk).state == m.AssignmentState.RELEASED)

    # Clicking the map point of the first document (placed alone in the bottom-left corner) opens it.
    canvas = page.locator("#map")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    canvas.click(position={"x": 14, "y": box["height"] - 14})
    expect(page).to_have_url(re.compile(rf"/projects/{project.pk}/documents/{docs[0].pk}/$"))
    expect(page.locator("#doc-text")).to_have_text(XSS)
    expect(page.locator("#attr-tokens .tok").first).to_be_visible()
    assert page.dialogs == [] and page.errors == []


def test_holdout_item_is_labeled_blind(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    ann = f.UserFactory(username="ann", password=PASSWORD)
    champion = f.ModelVersionFactory(status=m.ModelStatus.CHAMPION)
    membership_ensure(project=champion.project, user=ann, role=ANNOTATOR)
    doc = f.DocumentFactory(project=champion.project, split=m.Split.HOLDOUT, text="Hold me out.")
    f.PredictionFactory(document=doc, model_version=champion, predicted_label="rotten",
                        attributions=[["Hold", 0.5]])
    login(page, base, "ann")
    page.goto(f"{base}/projects/{champion.project.pk}/label/")
    wait_for_item(page, doc)
    expect(page.locator("#model-blind")).to_be_visible()
    expect(page.locator("#model-pred")).to_be_hidden()
    expect(page.locator("#reason")).to_contain_text("Holdout item")
    page.keyboard.press("2")
    expect(page.locator("#doc-text")).to_contain_text("Nothing left to label")
    assert m.Annotation.objects.get(document=doc, annotator=ann).label == "rotten"


def test_expired_lease_is_explained_and_a_new_model_is_announced(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    data = build_project(extra_pool=5)
    project, docs, user = data["project"], data["docs"], data["user"]
    page.clock.install()
    login(page, base, "ann")
    page.goto(f"{base}/projects/{project.pk}/label/")
    wait_for_item(page, docs[0])

    m.Assignment.objects.filter(annotator=user).update(leased_until=timezone.now() - timedelta(seconds=1))
    page.keyboard.press("1")
    banner = page.locator("#alerts")
    expect(banner).to_contain_text("Your hold on this item ran out")
    expect(banner).not_to_contain_text("Traceback")
    stored = list(m.Annotation.objects.filter(annotator=user).values("document_id", "assignment_id", "created_at"))
    leases = list(m.Assignment.objects.filter(annotator=user).values("id", "document_id", "state", "leased_until"))
    assert not stored, f"a label was stored on an expired lease: {stored}; leases {leases}; now {timezone.now()}"
    page.get_by_role("button", name="Load the next item").click()
    expect(page.locator("#alerts")).to_be_empty()
    expect(page.locator("#doc-id")).not_to_have_text("–")

    # A retrain finishes elsewhere: the page notices at its next poll (15 s, fast-forwarded here).
    m.ModelVersion.objects.filter(pk=data["champion"].pk).update(status=m.ModelStatus.RETIRED)
    f.ModelVersionFactory(project=project, version=4, status=m.ModelStatus.CHAMPION, train_label_count=170)
    page.clock.fast_forward(16_000)
    expect(page.locator("#model-notice")).to_contain_text("Model v4 finished training and is now live")
    expect(page.locator("#stat-model")).to_have_text("v4")


def test_staff_starts_a_retrain_and_watches_its_progress(live_server, browser_page) -> None:
    page, base = browser_page, live_server.url
    boss = f.UserFactory(username="boss", password=PASSWORD, is_staff=True)
    project = f.ProjectFactory(name="Fresh project")
    f.DocumentFactory.create_batch(3, project=project)
    login(page, base, "boss")
    page.goto(f"{base}/projects/{project.pk}/dashboard/")
    expect(page.locator("#c-model")).to_have_text("no model yet")
    expect(page.locator("#reliability")).to_contain_text("No model yet")
    page.get_by_role("button", name="Start a retrain").click()
    # The first request loads the training stack (torch) into the web process: allow for it.
    expect(page.locator("#run-live")).to_be_visible(timeout=90_000)
    expect(page.locator("#alerts")).to_contain_text("Retrain queued")
    run = m.TrainingRun.objects.get(project=project)
    assert run.requested_by == boss and run.trigger == m.RunTrigger.MANUAL
    m.TrainingRun.objects.filter(pk=run.pk).update(status=m.RunStatus.RUNNING, stage="train", progress=0.4)
    expect(page.locator("#run-pct")).to_have_text("40%", timeout=10_000)
    expect(page.locator("#run-stage")).to_contain_text("train")
    expect(page.get_by_role("button", name="Start a retrain")).to_be_disabled()
