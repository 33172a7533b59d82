"""A real prefork Celery worker serves its task metrics: durations by task and state, failures by exception.

The tasks run in the pool's child processes; the worker's main process serves what they recorded
(prometheus_client's multiprocess files), only to ``Authorization: Bearer <METRICS_TOKEN>``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from celery import current_app
from prometheus_client.parser import text_string_to_metric_families

from labeling.services.dispatch import TASKS, TaskName, queue_for
from tests.support.celery_worker import free_port, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "worker-scrape-" + "z" * 30


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_a_prefork_worker_serves_task_durations_and_failures(celery_worker_factory, tmp_path: Path) -> None:
    port = free_port()
    multiproc = tmp_path / "worker-metrics"
    multiproc.mkdir()
    worker = celery_worker_factory(
        pool="prefork",
        concurrency=2,
        env={"WORKER_METRICS_PORT": str(port), "METRICS_TOKEN": TOKEN, "PROMETHEUS_MULTIPROC_DIR": str(multiproc)},
    )
    url = f"http://127.0.0.1:{port}/metrics"
    wait_until(lambda: "task metrics on" in worker.logs(), timeout=30, what="the worker's metrics server")
    assert requests.get(url, timeout=5).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=5).status_code == 401

    reconcile = TASKS[TaskName.RECONCILE]
    queue = queue_for(reconcile.kind)
    for _ in range(2):
        current_app.send_task(str(reconcile.name), queue=queue)  # a real task, run to success
    # The same task with an argument it does not take: a real failure (TypeError), not retried.
    current_app.send_task(str(reconcile.name), args=(12345,), queue=queue)

    def scraped() -> str | None:
        text = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).text
        runs = _samples(text, "alabel_task_duration_seconds_count")
        done = runs.get((("state", "SUCCESS"), ("task", str(reconcile.name))), 0)
        failed = runs.get((("state", "FAILURE"), ("task", str(reconcile.name))), 0)
        return text if done == 2 and failed == 1 else None

    text = wait_until(scraped, timeout=120, interval=0.5,
                      what=lambda: f"task metrics; worker log:\n{worker.logs()[-3000:]}")
    failures = _samples(text, "alabel_task_failures_total")
    assert failures == {(("exception", "TypeError"), ("task", str(reconcile.name))): 1}
    durations = _samples(text, "alabel_task_duration_seconds_sum")
    assert durations[(("state", "SUCCESS"), ("task", str(reconcile.name)))] > 0
    # Recorded by the pool's children, one file per process, not by the main process that serves them.
    assert any(multiproc.glob("*.db"))
    assert "12345" not in text  # a task's arguments never become a label
