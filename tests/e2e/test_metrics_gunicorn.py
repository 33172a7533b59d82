"""/metrics on a real gunicorn (docker/gunicorn.conf.py) sees the requests of every worker process.

Workers are recycled every 10 requests, so 30 requests pass through at least 3 processes, most of them
gone by the time of the scrape; whichever process answers the scrape must count all 30.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.celery_worker import database_url, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "gunicorn-scrape-" + "q" * 30
REQUESTS = 30
RECYCLE_EVERY = 10
# A recycled worker loads the application again on its first request: minutes on a busy 2-core host.
TIMEOUT_S = 180


@pytest.fixture
def multiproc_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "prom"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"")  # a previous run's leftover (unreadable if kept)
    return folder


@pytest.fixture
def server(transactional_db, multiproc_dir: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "labeling.settings",
        "SECRET_KEY": "e2e-only",
        "METRICS_TOKEN": TOKEN,
        "METRICS_CACHE_SECONDS": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir),
        "WEB_CONCURRENCY": "3",
        "GUNICORN_THREADS": "2",
    }
    log = (tmp_path / "gunicorn.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "labeling.wsgi:application", "--config", "docker/gunicorn.conf.py",
         "--bind", f"127.0.0.1:{port}", "--max-requests", str(RECYCLE_EVERY), "--max-requests-jitter", "0"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    log.close()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=5).status_code in (200, 503):
                    break
            except requests.RequestException:  # not listening yet
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start: {(tmp_path / 'gunicorn.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _healthz_count(text: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "django_http_requests_latency_seconds_by_view_method_count"
                    and sample.labels == {"view": "healthz", "method": "GET"}):
                return sample.value
    return 0.0


def test_a_scrape_counts_the_requests_of_every_process(server: str, multiproc_dir: Path) -> None:
    assert not (multiproc_dir / "counter_999999.db").exists()  # emptied when gunicorn started
    for _ in range(REQUESTS):
        assert requests.get(f"{server}/healthz", timeout=TIMEOUT_S).status_code == 200
    writers = {m.group(1) for p in multiproc_dir.glob("*.db") if (m := re.search(r"_(\d+)\.db$", p.name))}
    assert len(writers) >= REQUESTS // RECYCLE_EVERY  # recycled: many processes wrote figures
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(4):  # whichever process answers
        response = requests.get(f"{server}/metrics", headers=auth, timeout=TIMEOUT_S)
        assert response.status_code == 200
        assert _healthz_count(response.text) == REQUESTS
    assert requests.get(f"{server}/metrics", timeout=TIMEOUT_S).status_code == 401
