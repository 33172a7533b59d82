"""Audit log reads at size: ``GET /api/v1/projects/{id}/audit/`` and ``/api/v1/audit/`` over many events.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/alabel_bench_audit \\
        .venv/bin/python bench/audit_log.py [--events 500000] [--projects 50] [--repeat 30]

Fills the log (once; an existing log of that size is reused) with ``--events`` events spread over
``--projects`` projects, 100 actors and every action over 180 days, by one INSERT ... SELECT (the
append-only trigger lets inserts through). Then times, in-process through Django's test client (the
view, the serializer, the JSON rendering and the queries; no HTTP server), the requests a manager or
staff make: a project's first page, a filtered page, a time window, a page deep in the cursor chain,
the site-wide first page, and the CSV export of one project (rows/s). Baseline, same run: each
request again with PostgreSQL's index scans switched off (``enable_indexscan`` and
``enable_bitmapscan`` off for the connection), i.e. what the indexes buy. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import time

from _common import machine, percentiles, setup_django

setup_django()

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client

from labeling.models import AuditAction, AuditEvent, Project, default_label_keys


def fill(events: int, projects: int) -> list[int]:
    """The bench projects' ids; their log filled up to ``events`` events."""
    labels = {"labels": default_label_keys(["a", "b"])}
    ids = [Project.objects.get_or_create(name=f"bench audit {i}", defaults=labels)[0].pk for i in range(projects)]
    if AuditEvent.objects.count() >= events:
        return ids
    actions = list(AuditAction.values)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO labeling_auditevent (created_at, action, actor_id, actor_name, project_id, project_name,
                                             target_type, target_id, target_repr, data)
            SELECT now() - (i * interval '180 days' / %s), (%s::text[])[1 + i %% %s], 1 + i %% 100,
                   'user' || (i %% 100), (%s::bigint[])[1 + i %% %s], 'bench audit ' || (i %% %s), 'user',
                   (i %% 5000)::text,
                   'member' || (i %% 5000), jsonb_build_object('old_role', 'annotator', 'new_role', 'reviewer')
            FROM generate_series(1, %s) AS i
            """,
            [events, actions, len(actions), ids, projects, projects, events - AuditEvent.objects.count()],
        )
        cursor.execute("ANALYZE labeling_auditevent")
    return ids


def timed(client: Client, url: str, repeat: int) -> dict[str, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        samples.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, (url, response.status_code, body[:200])
    return percentiles(samples)


def index_scans(on: bool) -> None:
    with connection.cursor() as cursor:
        value = "on" if on else "off"
        cursor.execute(f"SET enable_indexscan = {value}; SET enable_bitmapscan = {value}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}))
    t0 = time.perf_counter()
    ids = fill(args.events, args.projects)
    total = AuditEvent.objects.count()
    print(json.dumps({"events": total, "fill_s": round(time.perf_counter() - t0, 1)}))
    staff, _ = get_user_model().objects.get_or_create(username="bench-staff", defaults={"is_staff": True})
    client = Client()
    client.force_login(staff)
    project_id = ids[7]
    p = f"/api/v1/projects/{project_id}/audit/"
    first = client.get(p, {"page_size": 100}).json()
    for _ in range(20):  # 20 pages down the cursor chain
        first = client.get(first["next"]).json()
    deep = first["next"]
    window = "since=2026-06-01T00:00:00Z&until=2026-06-08T00:00:00Z"
    requests = {
        "project, first page (100)": f"{p}?page_size=100",
        "project, action filter": f"{p}?action=member.role_changed",
        "project, actor filter": f"{p}?actor=user7",
        "project, one week": f"{p}?{window}",
        "project, page 22 of the cursor chain": deep,
        "site, first page (staff)": "/api/v1/audit/?page_size=100",
        "site, target filter": "/api/v1/audit/?target_type=user&target_id=42",
    }
    for name, url in requests.items():
        index_scans(True)
        with_index = timed(client, url, args.repeat)
        index_scans(False)
        without = timed(client, url, max(3, args.repeat // 10))
        index_scans(True)
        print(json.dumps({"request": name, **with_index,
                          "baseline_no_index_p50_ms": without["p50_ms"],
                          "speedup_p50": round(without["p50_ms"] / with_index["p50_ms"], 1)}))
    rows = AuditEvent.objects.filter(project_id=project_id).count()
    csv = timed(client, f"{p}?format=csv", 3)
    print(json.dumps({"request": "project, CSV export", "rows": rows, **csv,
                      "rows_per_s": round(rows / (csv["p50_ms"] / 1000))}))


if __name__ == "__main__":
    main()
