"""Every UI page through Django's test client: sign-in, 404s, roles, escaping, the JSON reads."""

from __future__ import annotations

import re

import numpy as np
import pytest
from django.urls import reverse

from labeling import models as m
from labeling.roles import ANNOTATOR, INGEST
from labeling.services.memberships import membership_ensure
from labeling.services.training.evaluation import metrics_compact
from modelsvc.calibration import evaluate_predictions
from tests import factories as f

pytestmark = pytest.mark.django_db

RELIABILITY = [
    {"lower": i / 10, "upper": (i + 1) / 10, "count": 3, "confidence": i / 10 + 0.05, "accuracy": i / 10}
    for i in range(10)
]


@pytest.fixture
def annotator():
    return f.UserFactory(username="ann")


@pytest.fixture
def admin():
    return f.UserFactory(username="boss", is_staff=True)


@pytest.fixture
def project(annotator):
    project = f.ProjectFactory(name="Movie reviews")
    membership_ensure(project=project, user=annotator, role=ANNOTATOR)
    return project


@pytest.fixture
def champion(project):
    mv = f.ModelVersionFactory(
        project=project, version=2, status=m.ModelStatus.CHAMPION, train_label_count=40,
        metrics={"accuracy": 0.81, "macro_f1": 0.79, "ece": 0.03, "ece_uncalibrated": 0.11,
                 "reliability": RELIABILITY, "reliability_uncalibrated": RELIABILITY},
    )
    f.ModelVersionFactory(project=project, version=1, status=m.ModelStatus.RETIRED, train_label_count=20,
                          metrics={"accuracy": 0.7, "macro_f1": 0.66})
    return mv


def _pages(project):
    return [
        reverse("ui:project-list"),
        reverse("ui:label", args=[project.pk]),
        reverse("ui:dashboard", args=[project.pk]),
        reverse("ui:document", args=[project.pk, f.DocumentFactory(project=project).pk]),
    ]


def test_every_page_requires_sign_in(client, project):
    for url in _pages(project):
        res = client.get(url)
        assert res.status_code == 302
        assert res["Location"].startswith(reverse("ui:login"))


def test_json_reads_answer_401_not_a_login_page(client, project):
    res = client.get(reverse("ui:dashboard-json", args=[project.pk]))
    assert res.status_code == 401
    assert "sign in" in res.json()["detail"]


def test_login_then_project_list(client, annotator, project):
    res = client.post(reverse("ui:login"), {"username": "ann", "password": "pw-for-tests"})
    assert res.status_code == 302 and res["Location"] == reverse("ui:project-list")
    page = client.get(reverse("ui:project-list")).content.decode()
    assert "Movie reviews" in page
    assert reverse("ui:label", args=[project.pk]) in page


def test_wrong_password_is_explained(client, annotator):
    res = client.post(reverse("ui:login"), {"username": "ann", "password": "nope"})
    assert res.status_code == 200
    assert "did not match" in res.content.decode()


def test_logout_is_a_post_and_returns_to_login(client, annotator):
    client.force_login(annotator)
    res = client.post(reverse("ui:logout"))
    assert res.status_code == 302 and res["Location"] == reverse("ui:login")
    assert client.get(reverse("ui:project-list")).status_code == 302


def test_user_without_a_role_is_refused(client, project):
    """A member whose role cannot label gets 403; a non-member gets 404 (the project stays hidden)."""
    feeder = f.UserFactory(username="feeder")
    membership_ensure(project=project, user=feeder, role=INGEST)
    client.force_login(feeder)
    assert client.get(reverse("ui:label", args=[project.pk])).status_code == 403
    assert client.get(reverse("ui:dashboard-json", args=[project.pk])).status_code == 403
    client.force_login(f.UserFactory(username="nobody"))
    assert client.get(reverse("ui:label", args=[project.pk])).status_code == 404
    assert client.get(reverse("ui:dashboard-json", args=[project.pk])).status_code == 404
    assert "Movie reviews" not in client.get(reverse("ui:project-list")).content.decode()


def test_unknown_project_is_404(client, annotator):
    client.force_login(annotator)
    for name in ("ui:label", "ui:dashboard", "ui:progress-json", "ui:dashboard-json"):
        assert client.get(reverse(name, args=[9999])).status_code == 404
    assert client.get(reverse("ui:document", args=[9999, 1])).status_code == 404


def test_document_of_another_project_is_404(client, annotator, project):
    client.force_login(annotator)
    other = f.DocumentFactory()
    assert client.get(reverse("ui:document", args=[project.pk, other.pk])).status_code == 404


def test_labeling_page_lists_labels_with_their_keys(client, annotator, project):
    client.force_login(annotator)
    page = client.get(reverse("ui:label", args=[project.pk])).content.decode()
    assert 'data-label="fresh" data-key="1"' in page
    assert 'data-label="rotten" data-key="2"' in page
    assert 'aria-keyshortcuts="s"' in page
    assert 'id="label-config"' in page


def test_annotator_sees_no_admin_actions_staff_does(client, annotator, admin, project, champion):
    client.force_login(annotator)
    page = client.get(reverse("ui:dashboard", args=[project.pk])).content.decode()
    assert "start-retrain" not in page and "Roll back" not in page
    assert '"is_admin": false' in page
    client.force_login(admin)
    page = client.get(reverse("ui:dashboard", args=[project.pk])).content.decode()
    assert 'id="start-retrain"' in page and "Roll back" in page
    assert '"is_admin": true' in page


def test_document_text_is_escaped(client, annotator, project):
    client.force_login(annotator)
    doc = f.DocumentFactory(project=project, text="<script>alert(1)</script>")
    page = client.get(reverse("ui:document", args=[project.pk, doc.pk])).content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_project_name_is_escaped_in_label_config(client, annotator):
    project = f.ProjectFactory(name="</script><script>alert(1)</script>")
    client.force_login(annotator)
    page = client.get(reverse("ui:label", args=[project.pk])).content.decode()
    assert "<script>alert(1)" not in page


def test_holdout_document_hides_the_model_until_labeled(client, annotator, project, champion):
    client.force_login(annotator)
    doc = f.DocumentFactory(project=project, split=m.Split.HOLDOUT)
    f.PredictionFactory(document=doc, model_version=champion, predicted_label="rotten",
                        attributions=[["bad", 0.9]])
    page = client.get(reverse("ui:document", args=[project.pk, doc.pk])).content.decode()
    assert "Holdout item" in page
    # The random CSRF token of the page's forms could contain "bad" by chance; it is not shown text.
    shown = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", page)
    assert "csrfmiddlewaretoken" in page and "predicts" not in shown and "bad" not in shown
    res = client.get(reverse("ui:attributions-json", args=[project.pk, doc.pk]))
    assert res.status_code == 409


def test_stored_attributions_are_served(client, annotator, project, champion):
    client.force_login(annotator)
    doc = f.DocumentFactory(project=project, text="a truly great film")
    f.PredictionFactory(document=doc, model_version=champion, attributions=[["great", 0.8], ["film", -0.1]])
    res = client.get(reverse("ui:attributions-json", args=[project.pk, doc.pk]))
    assert res.status_code == 200
    assert res.json()["tokens"] == [["great", 0.8], ["film", -0.1]]
    assert res.json()["version"] == 2


def test_attributions_not_stored_are_computed_by_a_worker(
    client, annotator, project, champion, django_capture_on_commit_callbacks, monkeypatch
):
    from labeling.services import dispatch

    sent = []
    monkeypatch.setattr(dispatch.current_app, "send_task", lambda name, **kw: sent.append((name, kw["args"])))
    client.force_login(annotator)
    doc = f.DocumentFactory(project=project)
    pred = f.PredictionFactory(document=doc, model_version=champion, attributions=None)  # nothing stored yet
    with django_capture_on_commit_callbacks(execute=True):
        first = client.get(reverse("ui:attributions-json", args=[project.pk, doc.pk]))
        again = client.get(reverse("ui:attributions-json", args=[project.pk, doc.pk]))
    assert first.status_code == again.status_code == 202
    assert first.json()["status"] == "computing" and first["Retry-After"]
    assert sent == [(str(dispatch.TaskName.ATTRIBUTE), (pred.pk,))]  # one message per prediction, not per poll


def test_attribution_requests_are_rate_limited_per_user_and_project(client, annotator, project, champion, settings):
    from django.core.cache import cache

    cache.clear()
    settings.ATTRIBUTIONS_PER_MINUTE = 2
    client.force_login(annotator)
    codes = []
    for _ in range(3):
        doc = f.DocumentFactory(project=project)
        f.PredictionFactory(document=doc, model_version=champion, attributions=None)
        codes.append(client.get(reverse("ui:attributions-json", args=[project.pk, doc.pk])).status_code)
    assert codes == [202, 202, 429]


def test_attributions_without_a_prediction_are_404(client, annotator, project):
    client.force_login(annotator)
    doc = f.DocumentFactory(project=project)
    res = client.get(reverse("ui:attributions-json", args=[project.pk, doc.pk]))
    assert res.status_code == 404
    assert "not scored" in res.json()["detail"]


def test_progress_counts_today_and_names_the_champion(client, annotator, project, champion):
    client.force_login(annotator)
    docs = f.DocumentFactory.create_batch(4, project=project)
    for d in docs[:2]:
        f.AnnotationFactory(document=d, annotator=annotator)
        m.Document.objects.filter(pk=d.pk).update(is_labeled=True)
    data = client.get(reverse("ui:progress-json", args=[project.pk])).json()
    assert data["labeled_today_mine"] == 2
    assert data["queue_remaining"] == 2
    assert data["champion"]["version"] == 2


def test_dashboard_json_without_a_model(client, annotator, project):
    client.force_login(annotator)
    data = client.get(reverse("ui:dashboard-json", args=[project.pk])).json()
    assert data["champion"] is None
    assert data["calibration"] is None
    assert data["map"] == [] and data["learning_curve"] == []


def test_dashboard_json_with_a_champion(client, annotator, project, champion):
    client.force_login(annotator)
    for i in range(6):
        doc = f.DocumentFactory(project=project, is_labeled=i < 2)
        f.PredictionFactory(document=doc, model_version=champion, map_x=float(i), map_y=float(-i),
                            mutual_info=0.05 * i, predicted_label="fresh" if i % 3 else "rotten")
    m.TrainingRun.objects.create(project=project, status=m.RunStatus.SUCCEEDED, model_version=champion,
                                 promoted=True, decision_reason="beats v1 on the holdout")
    data = client.get(reverse("ui:dashboard-json", args=[project.pk])).json()
    assert [p["version"] for p in data["learning_curve"]] == [1, 2]
    assert data["calibration"]["ece_uncalibrated"] == 0.11
    assert len(data["calibration"]["reliability"]) == 10
    assert sum(b["count"] for b in data["pool"]["histogram"]["bins"]) == 4  # unlabeled pool only
    assert {r["label"]: r["count"] for r in data["pool"]["class_balance"]} == {"fresh": 4, "rotten": 2}
    assert len(data["map"]) == 6
    assert data["runs"][0]["decision_reason"] == "beats v1 on the holdout"


def test_malformed_metrics_read_as_missing(client, annotator, project):
    f.ModelVersionFactory(project=project, version=1, status=m.ModelStatus.CHAMPION,
                          metrics={"accuracy": "n/a", "reliability": [{"lower": 0}]})
    client.force_login(annotator)
    data = client.get(reverse("ui:dashboard-json", args=[project.pk])).json()
    assert data["champion"]["accuracy"] is None
    assert data["calibration"] is None
    assert data["learning_curve"] == []


def test_map_is_thinned_to_the_limit(project, champion):
    from labeling.selectors.dashboard import embedding_map

    for i in range(30):
        f.PredictionFactory(document=f.DocumentFactory(project=project), model_version=champion,
                            map_x=float(i), map_y=0.0)
    points = embedding_map(champion=champion, max_points=10)
    assert 5 <= len(points) <= 10


def test_dashboard_json_gives_every_figure_its_interval_and_n(client, annotator, project):
    """The champion card, the calibration panel and the runs table read the same figures, with n."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.5, 1.0, 10)
    probs = np.stack([p, 1 - p], axis=1)
    y = (rng.random(10) >= p).astype(int)
    metrics = {**metrics_compact(evaluate_predictions(probs, probs, y, {})), "holdout_count": 10}
    champion = f.ModelVersionFactory(project=project, version=1, status=m.ModelStatus.CHAMPION, metrics=metrics)
    m.TrainingRun.objects.create(project=project, status=m.RunStatus.SUCCEEDED, model_version=champion)
    client.force_login(annotator)
    data = client.get(reverse("ui:dashboard-json", args=[project.pk])).json()
    figures = data["champion"]["figures"]
    assert figures["n"] == 10 and figures["too_small"] is True and figures["min_n"] == 100
    assert figures["accuracy_interval"] == metrics["intervals"]["accuracy"]
    assert figures["ece_interval"] == metrics["intervals"]["ece"]
    assert data["calibration"]["figures"] == figures
    assert data["runs"][0]["figures"] == figures
    curve = data["learning_curve"][0]
    assert curve["n"] == 10 and curve["too_small"] is True
    assert curve["accuracy_interval"] == metrics["intervals"]["accuracy"]
