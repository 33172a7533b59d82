"""Where one ``queue/next`` request's time goes: cProfile over ``--requests`` requests, in process.

    .venv/bin/python bench/queue_profile.py [--requests 200] [--docs 100000]

The ``bench 100k`` project of bench/queue_latency.py (built if missing). Each request goes through
Django's full handler (middleware, DRF, token authentication, throttles, the view, JSON rendering) by
the test client, as gunicorn would call it, but in this process and without HTTP; after each one the
lease is released (not measured), so every request ranks the same pool. Rows: the mean wall time per
request without the profiler; the statements per request and the time spent waiting for them (the
driver's ``execute`` and ``fetch``, round trip included); then, under the profiler, the cumulative time
per request of each stage (stages nest: DRF's ``dispatch`` holds authentication, throttles, the view and
the response), and the 25 functions with the most cumulative time. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import time
from typing import Any

os.environ.update({"DEBUG": "0", "CONN_MAX_AGE": "60", "THROTTLE_USER": "100000000/hour"})

from _common import machine  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from queue_latency import ensure_scored, release_all, tokens  # noqa: E402 - sets Django up

# (stage, file name part, function name): cumulative time per request, from the profile.
STAGES = (
    ("whole request: the WSGI handler", "django/test/client.py", "__call__"),
    ("middleware chain with the view inside", "django/core/handlers/base.py", "get_response"),
    ("DRF dispatch (everything below)", "rest_framework/views.py", "dispatch"),
    ("DRF initial: authentication, gate, permissions, throttles", "rest_framework/views.py", "initial"),
    ("authentication (the token + membership statement)", "labeling/api/authentication.py", "authenticate"),
    ("throttles", "rest_framework/views.py", "check_throttles"),
    ("the view's post", "labeling/api/queue.py", "post"),
    ("project_or_404", "labeling/api/base.py", "project_or_404"),
    ("lease_next", "labeling/services/assignments.py", "lease_next"),
    ("the response body (queue_item)", "labeling/api/queue.py", "queue_item"),
    ("finalize_response", "rest_framework/views.py", "finalize_response"),
    ("JSON rendering", "rest_framework/response.py", "rendered_content"),
    ("SecurityMiddleware.process_response", "django/middleware/security.py", "process_response"),
    ("WhiteNoise", "whitenoise/middleware.py", "__call__"),
    ("SessionMiddleware.process_response", "django/contrib/sessions/middleware.py", "process_response"),
    ("CommonMiddleware", "django/middleware/common.py", "process_response"),
    ("CsrfViewMiddleware.process_view", "django/middleware/csrf.py", "process_view"),
    ("MessageMiddleware.process_response", "django/contrib/messages/middleware.py", "process_response"),
    ("CSP", "csp/middleware.py", "process_response"),
    ("axes", "axes/middleware.py", "__call__"),
    ("prometheus before", "django_prometheus/middleware.py", "process_request"),
    ("prometheus after", "django_prometheus/middleware.py", "process_response"),
    ("database: execute", "psycopg/cursor.py", "execute"),
)


class Statements:
    """``connection.execute_wrapper``: statements and the time spent in them."""

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.sql: list[str] = []
        self.on = False

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if not self.on:
            return execute(sql, params, many, context)
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - t0
            self.count += 1
            self.sql.append(sql[:100])


def one(client: Client, url: str) -> int:
    response = client.post(url)
    assert response.status_code == 200, response.content[:300]
    return int(response.json()["assignment"]["id"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}), flush=True)
    project = ensure_scored(args.docs)
    release_all(project)
    [key] = tokens(1, project)
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    url = f"/api/v1/projects/{project.pk}/queue/next"

    def release(lease: int) -> None:
        client.post(f"/api/v1/assignments/{lease}/release")

    for _ in range(20):  # warm-up: imports, the connection, caches
        release(one(client, url))

    wall = []
    for _ in range(args.requests):
        t0 = time.perf_counter()
        lease = one(client, url)
        wall.append(time.perf_counter() - t0)
        release(lease)
    wall.sort()
    n = args.requests
    print(json.dumps({"row": "wall per request, no profiler", "n": n,
                      "mean_ms": round(sum(wall) / n * 1000, 2), "p50_ms": round(wall[n // 2] * 1000, 2),
                      "p95_ms": round(wall[int(n * 0.95)] * 1000, 2)}), flush=True)

    statements = Statements()
    with connection.execute_wrapper(statements):
        for _ in range(args.requests):
            statements.on = True
            lease = one(client, url)
            statements.on = False
            release(lease)
    print(json.dumps({"row": "statements (the release not counted)", "per_request": round(statements.count / n, 2),
                      "sql_ms_per_request": round(statements.seconds / n * 1000, 2),
                      "one_request": statements.sql[-round(statements.count / n):]}), flush=True)

    profiler = cProfile.Profile()
    for _ in range(args.requests):
        profiler.enable()
        lease = one(client, url)
        profiler.disable()
        release(lease)
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total_profiled = 0.0
    rows = []
    for stage, file_part, func in STAGES:
        cumulative = sum(ct for (f, _, name), (_, _, _, ct, _) in entries.items() if file_part in f and name == func)
        if stage.startswith("whole request"):
            total_profiled = cumulative
        rows.append({"stage": stage, "ms_per_request": round(cumulative / n * 1000, 3),
                     "share": round(cumulative / total_profiled, 3) if total_profiled else None})
    for row in rows:
        print(json.dumps(row), flush=True)
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue())
    release_all(project)


if __name__ == "__main__":
    main()
