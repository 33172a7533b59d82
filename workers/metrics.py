"""Task metrics of a Celery worker, served by the worker itself for a Prometheus scraper.

Every task run observes ``alabel_task_duration_seconds{task, state}`` (SUCCESS, FAILURE, RETRY ...;
its ``_count`` is the number of runs in that state) and every failure counts in
``alabel_task_failures_total{task, exception}`` (the exception's class name). Labels are task names
and class names only: never a task's arguments.

A prefork worker runs its tasks in child processes, so the figures live in prometheus_client's
multiprocess files under ``PROMETHEUS_MULTIPROC_DIR`` (a directory of this worker's own), and the
worker's main process serves all of them on ``METRICS_BIND:WORKER_METRICS_PORT`` behind the same
``Authorization: Bearer <METRICS_TOKEN>`` as the web's /metrics. Without a port nothing is served;
without a token the server does not start (logged), so the figures are never public.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from celery.signals import task_failure, task_postrun, task_prerun, worker_ready, worker_shutdown
from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector

log = logging.getLogger(__name__)

# From a 50 ms reconciliation to a 6 h import.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)

TASK_DURATION = Histogram(
    "alabel_task_duration_seconds",
    "Celery task run time, by task name and final state.",
    ["task", "state"],
    buckets=DURATION_BUCKETS,
)
TASK_FAILURES = Counter(
    "alabel_task_failures_total", "Celery task failures, by task name and exception class.", ["task", "exception"]
)

_started: dict[str, float] = {}


@task_prerun.connect
def _task_started(task_id: str | None = None, **_: Any) -> None:
    if task_id is not None:
        _started[task_id] = time.monotonic()


@task_postrun.connect
def _task_finished(task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any) -> None:
    started = _started.pop(task_id, None) if task_id is not None else None
    if started is None or task is None:
        return
    TASK_DURATION.labels(task=str(task.name), state=str(state or "UNKNOWN")).observe(time.monotonic() - started)


@task_failure.connect
def _task_failed(sender: Any = None, exception: BaseException | None = None, **_: Any) -> None:
    name = getattr(sender, "name", None) or "unknown"
    TASK_FAILURES.labels(task=str(name), exception=type(exception).__name__ if exception else "unknown").inc()


def registry() -> CollectorRegistry:
    """Every process of this worker (multiprocess files) or, without a directory, this process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(merged)
        return merged
    return REGISTRY


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def bearer_only(app: WsgiApp, token: str) -> WsgiApp:
    """``app`` for requests carrying ``Authorization: Bearer <token>`` (constant-time compare); 401 otherwise."""
    expected = f"Bearer {token}".encode()

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        given = str(environ.get("HTTP_AUTHORIZATION", "")).encode("latin-1", "replace")
        if not hmac.compare_digest(given, expected):
            start_response("401 Unauthorized", [("Content-Type", "text/plain"),
                                                ("WWW-Authenticate", 'Bearer realm="metrics"')])
            return [b"a metrics token is required\n"]
        return app(environ, start_response)

    return guarded


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass


class MetricsServer:
    """The worker's metrics endpoint: a thread in the main process, stopped with the worker."""

    def __init__(self, *, host: str, port: int, token: str) -> None:
        app = bearer_only(make_wsgi_app(registry()), token)
        self.httpd = make_server(host, port, app, ThreadingWSGIServer, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="metrics-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


_server: MetricsServer | None = None


@worker_ready.connect
def _serve(**_: Any) -> None:
    """Once the pool is up (prefork children never inherit the server's thread), if a port is set."""
    global _server
    port = int(settings.WORKER_METRICS_PORT)
    if not port:
        return
    if not settings.METRICS_TOKEN:
        log.warning("WORKER_METRICS_PORT is set but METRICS_TOKEN is not: task metrics are not served")
        return
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        log.warning("PROMETHEUS_MULTIPROC_DIR is not set: only tasks run in the main process (the solo "
                    "pool) are counted, not those of prefork children")
    _server = MetricsServer(host=str(settings.METRICS_BIND), port=port, token=str(settings.METRICS_TOKEN)).start()
    log.info("task metrics on http://%s:%s/metrics", settings.METRICS_BIND, _server.port)


@worker_shutdown.connect
def _stop_serving(**_: Any) -> None:
    global _server
    if _server is not None:
        _server.stop()
        _server = None
