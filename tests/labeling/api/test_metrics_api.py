"""GET /metrics: only for the METRICS_TOKEN holder; request latency, per-project gauges, queue depths.

Queue depths are read from the real Redis broker of this helper (CELERY_BROKER_URL), with messages
sent to it by the service's own registry; the figures are parsed with prometheus_client's parser.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import yaml
from celery import current_app
from django.conf import settings as django_settings
from django.core.cache import cache
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from labeling.api import metrics as metrics_api
from labeling.models import Annotation, ModelStatus, Split
from labeling.services.dispatch import TASKS, TaskName, known_queues, queue_for
from tests import factories as f
from tests.labeling.api.conftest import token_client
from tests.support.celery_worker import free_port, use_broker
from workers.metrics import TASK_DURATION, TASK_FAILURES

pytestmark = pytest.mark.django_db

TOKEN = "scrape-me-" + "x" * 30
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _fresh_figures(settings):
    settings.METRICS_CACHE_SECONDS = 0
    cache.delete(metrics_api.FIGURES_KEY)


@pytest.fixture
def metrics_on(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(token: str = TOKEN) -> str:
    response = APIClient().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label pairs: value} of every sample called ``name``."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_without_a_token_configured_metrics_are_404_for_everyone(settings, admin_user) -> None:
    settings.METRICS_TOKEN = ""
    assert APIClient().get("/metrics").status_code == 404
    assert APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404
    staff = APIClient()
    staff.force_login(admin_user)
    response = staff.get("/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_only_the_metrics_token_opens_metrics(metrics_on, admin_user) -> None:
    anonymous = APIClient().get("/metrics")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"].startswith("Bearer")
    assert APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer " + "y" * 40).status_code == 401
    assert APIClient().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN} extra").status_code == 401
    assert APIClient().get("/metrics", HTTP_AUTHORIZATION=f"Token {TOKEN}").status_code == 401
    # A staff session or a staff API key is no way in: the scraper's credential is its own.
    staff = APIClient()
    staff.force_login(admin_user)
    assert staff.get("/metrics").status_code == 401
    assert token_client(admin_user).get("/metrics").status_code == 401
    assert "alabel_project_documents" in scrape()


def test_wrong_tokens_meet_the_failed_authentication_limit(metrics_on, settings) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth_failures": "3/min"}}
    codes = [APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code for _ in range(5)]
    assert codes[:3] == [401, 401, 401] and codes[-1] == 429


def test_request_latency_by_view_method_and_status(metrics_on) -> None:
    client = APIClient()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    text = scrape()
    latency = samples(text, "django_http_requests_latency_seconds_by_view_method_count")
    assert latency[(("method", "GET"), ("view", "healthz"))] >= 3
    statuses = samples(text, "django_http_responses_total_by_status_view_method_total")
    assert statuses[(("method", "GET"), ("status", "200"), ("view", "healthz"))] >= 3


def test_project_gauges_and_no_text_or_names(metrics_on) -> None:
    project = f.ProjectFactory(name="Secret Project Zebra-Quokka")
    docs = [f.DocumentFactory(project=project, text=f"Confidential memo Xylophone-{i}") for i in range(6)]
    holdout = f.DocumentFactory(project=project, text="Holdout text Marmalade", split=Split.HOLDOUT)
    annotator = f.UserFactory(username="annotator-Wombat-Kestrel", email="wombat@example.org",
                              first_name="Persephone")
    f.AnnotationFactory(document=docs[0], annotator=annotator)
    f.AnnotationFactory(document=docs[1], annotator=annotator)
    old = f.AnnotationFactory(document=docs[2], annotator=annotator)
    Annotation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
    champion = f.ModelVersionFactory(project=project, status=ModelStatus.CHAMPION,
                                     metrics={"ece": 0.0312, "accuracy": 0.8})
    f.ModelVersionFactory(project=project, status=ModelStatus.RETIRED, metrics={"ece": 0.5})
    for doc in (*docs[:3], holdout):
        f.PredictionFactory(document=doc, model_version=champion)
    empty = f.ProjectFactory(name="No documents Yak")

    text = scrape()
    p = (("project", str(project.pk)),)
    assert samples(text, "alabel_project_documents")[p] == 7
    assert samples(text, "alabel_project_labels")[p] == 3
    assert samples(text, "alabel_project_labels_last_hour")[p] == 2
    assert samples(text, "alabel_project_coverage_ratio")[p] == pytest.approx(4 / 7)  # 3 pool + holdout
    assert samples(text, "alabel_project_champion_ece")[p] == pytest.approx(0.0312)
    assert (("project", str(empty.pk)),) not in samples(text, "alabel_project_documents")
    for secret in ("Zebra", "Quokka", "Xylophone", "Marmalade", "Wombat", "Kestrel", "wombat@", "Persephone",
                   "Yak", project.name, annotator.username):
        assert secret not in text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "project" in sample.labels:
                assert sample.labels["project"].isdigit()


def test_a_champion_without_a_stored_ece_has_no_ece_sample(metrics_on) -> None:
    project = f.ProjectFactory()
    f.DocumentFactory(project=project)
    f.ModelVersionFactory(project=project, status=ModelStatus.CHAMPION, metrics={"ece": "not a number"})
    text = scrape()
    assert (("project", str(project.pk)),) not in samples(text, "alabel_project_champion_ece")
    assert samples(text, "alabel_project_documents")[(("project", str(project.pk)),)] == 1


def test_the_figures_are_computed_at_most_once_per_cache_period(metrics_on, settings) -> None:
    settings.METRICS_CACHE_SECONDS = 3600
    project = f.ProjectFactory()
    f.DocumentFactory(project=project)
    p = (("project", str(project.pk)),)
    assert samples(scrape(), "alabel_project_documents")[p] == 1
    f.DocumentFactory(project=project)
    assert samples(scrape(), "alabel_project_documents")[p] == 1  # the cached figure
    cache.delete(metrics_api.FIGURES_KEY)
    assert samples(scrape(), "alabel_project_documents")[p] == 2


@pytest.fixture
def broker():
    url = str(django_settings.CELERY_BROKER_URL)
    if not url.startswith("redis://"):
        pytest.skip("queue depths are read from a Redis broker (CELERY_BROKER_URL)")
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_queue_depth_per_celery_queue(metrics_on, broker) -> None:
    scoring = TASKS[TaskName.RECONCILE]
    training = TASKS[TaskName.SCHEDULED_RETRAIN]
    for _ in range(3):
        current_app.send_task(str(scoring.name), queue=queue_for(scoring.kind))
    current_app.send_task(str(training.name), queue=queue_for(training.kind))
    depth = samples(scrape(), "alabel_celery_queue_depth")
    assert {dict(labels)["queue"] for labels in depth} == set(known_queues())
    assert depth[(("queue", queue_for(scoring.kind)),)] == 3
    assert depth[(("queue", queue_for(training.kind)),)] == 1
    assert depth[(("queue", "gpu"),)] == 0


def test_a_broker_outage_leaves_the_depths_out_not_the_scrape(metrics_on, settings) -> None:
    with use_broker(f"redis://127.0.0.1:{free_port()}/0"):
        text = scrape()
    assert samples(text, "alabel_celery_queue_depth") == {}
    assert "alabel_project_documents" in text


def test_the_dashboard_and_scrape_config_use_what_is_exported(metrics_on) -> None:
    """Every metric the Grafana dashboard queries is one the web or a worker exports."""
    project = f.ProjectFactory()
    f.DocumentFactory(project=project)
    f.ModelVersionFactory(project=project, status=ModelStatus.CHAMPION, metrics={"ece": 0.02})
    APIClient().get("/healthz")
    web = {s.name for family in text_string_to_metric_families(scrape()) for s in family.samples}
    worker = {f"{TASK_DURATION._name}_{suffix}" for suffix in ("bucket", "count", "sum")}
    worker.add(f"{TASK_FAILURES._name}_total")
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queried = {name for e in exprs for name in re.findall(r"\b(?:alabel|django)_[a-z_]+", e)}
    assert len(queried) >= 10
    assert queried - web - worker == set()
    scrape_config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape_config["scrape_configs"]}
    assert {job["authorization"]["type"] for job in jobs.values()} == {"Bearer"}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    worker_port = int(compose["x-worker-metrics"]["WORKER_METRICS_PORT"])
    assert {c["port"] for c in jobs["alabel-workers"]["dns_sd_configs"]} == {worker_port}


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "METRICS_TOKEN"}}
    base.update(env, DJANGO_SETTINGS_MODULE="labeling.settings")
    return subprocess.run([sys.executable, "-c", "import django; django.setup();" + code], cwd=ROOT, env=base,
                          capture_output=True, text=True, timeout=120)


def test_a_short_metrics_token_is_refused_at_start(tmp_path: Path) -> None:
    out = _python("", VAR_DIR=str(tmp_path), METRICS_TOKEN="short")
    assert out.returncode != 0 and "METRICS_TOKEN must be at least 24 characters" in out.stderr
    assert _python("", VAR_DIR=str(tmp_path), METRICS_TOKEN="t" * 24).returncode == 0


def test_the_demos_filesystem_broker_has_queue_depths_too(tmp_path: Path) -> None:
    """`make demo` runs on kombu's filesystem transport: the depth is the queue's message files."""
    code = ("from celery import current_app; from labeling.selectors.metrics import queue_depths;"
            "current_app.send_task('alabel.scoring.reconcile', queue='scoring');"
            "current_app.send_task('alabel.scoring.reconcile', queue='scoring');"
            "import json; print(json.dumps(queue_depths()))")
    out = _python(code, VAR_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    depths = json.loads(out.stdout.strip().splitlines()[-1])
    assert depths["scoring"] == 2 and depths["training"] == 0 and set(depths) == set(known_queues())
