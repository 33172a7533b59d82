"""Queue latency: ``POST /api/v1/projects/{id}/queue/next`` with 100,000 scored pool documents.

    .venv/bin/python bench/queue_latency.py [--clients 20] [--per-client 40] [--repeats 3] [--skip stress,team]

Uses the ``bench 100k`` project of bench/rescore.py (100,000 documents cycling through the real
rt-snippets + trec texts, a champion trained on 1,000 labels, every document scored; built here if
missing). A real gunicorn server (4 processes x 5 threads) serves ``--clients`` concurrent
annotators, each a process of its own (``--client-threads`` adds the paced row with thread clients
sharing one interpreter lock, as this bench measured before 2026-12-02 stop 28), each looping:
queue/next (timed, client side, HTTP included), then labeling the leased document with its gold
label (not timed), as a fast annotator would. The first two calls per
client are warm-up and not counted. Baselines (same run): the floor, one ``SELECT 1`` view behind
the same gunicorn, DRF, token authentication, membership gate and throttles (bench/_stack_ping.py,
served only by the bench), and one annotator alone.

Each of ``--repeats`` repeats measures, interleaved: the floor, one annotator, the 20 annotators
labeling with no pause at all (a stress test: on 2 cores it measures queueing for the CPU), then the
same 20 pausing ``--think-s`` per document (uniform 0.5x-1.5x; 1 s is a fast keyboard annotator),
which is the load a labeling team puts on the service; beside the paced annotators a probe times the
floor's ``SELECT 1`` (``select1_beside_paced``): how much the host's contention stretches a request
that does no work, the control for the paced target. Each repeat prints the two targets of #23 as
ratios of its own rows: one annotator's p95 over the floor's (target <= 2) and the paced annotators'
p95 over one annotator's (target <= 1.5); the medians over the repeats follow. Two more paced rows
come after the repeats: overlap 2 on every document (each served to two annotators), and a review
queue filling as they label (a 25% audit share: a review item is written inside each labeling
transaction that draws one); their p95 is reported against the paced single-label row's median
(target: within 20%). The project's policy is restored afterwards.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from _common import (
    ROOT,
    analyze,
    ensure_project,
    free_port,
    labeled_corpus,
    machine,
    percentiles,
    setup_django,
    start_gunicorn,
    warm_cache,
)

setup_django()

import requests
from django.contrib.auth import get_user_model

from labeling.models import Assignment, AssignmentState, Document, Prediction, Project
from labeling.roles import ANNOTATOR
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_update_policy
from labeling.services.scoring import model_version_rescore
from labeling.services.tokens import token_create

WARMUP = 2


def ensure_scored(n_docs: int):
    from rescore import PROJECT, ensure_champion

    from labeling.selectors.models import champion_get

    # Built and scored by an earlier run (every document scored by its champion): as it is.
    project = Project.objects.filter(name=PROJECT).first()
    champion = champion_get(project_id=project.pk) if project is not None else None
    if champion is not None:
        total = Document.objects.filter(project=project).count()
        if total >= n_docs and Prediction.objects.filter(model_version_id=champion.pk).count() >= total:
            return project
    texts, _, _ = labeled_corpus()
    warm_cache(texts)
    project = ensure_project(PROJECT, n_docs)
    run_id, champion_id = ensure_champion(project)
    total = Document.objects.filter(project=project).count()
    while Prediction.objects.filter(model_version_id=champion_id).count() < total:
        model_version_rescore(run_id=run_id, model_version_id=champion_id)
    return project


def tokens(n: int, project: Project) -> list[str]:
    out = []
    for i in range(n):
        user, _ = get_user_model().objects.get_or_create(username=f"bench-annotator-{i + 1}")
        membership_ensure(project=project, user=user, role=ANNOTATOR)
        out.append(token_create(user=user, client="bench")[1])
    return out


def start_server(port: int) -> subprocess.Popen[bytes]:
    """The service (gunicorn 4 x 5 threads) plus the bench-only ``SELECT 1`` view (``_stack_settings``)."""
    bench_dir = str(ROOT / "bench")
    return start_gunicorn(
        port, "-w", "4", "--threads", "5", "--worker-class", "gthread",
        # A shared machine at load 20-40 stalls a worker past gunicorn's default 30 s; its clients'
        # connections were reset. The bench measures latency, so it waits.
        "--timeout", "300",
        env_extra={
            "CONN_MAX_AGE": "60",
            "DJANGO_SETTINGS_MODULE": "_stack_settings",
            "PYTHONPATH": os.pathsep.join([bench_dir, str(ROOT), os.environ.get("PYTHONPATH", "")]),
        },
    )


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(120)  # a graceful stop takes a while on a loaded machine
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def ping_loop(base: str, project_id: int, token: str, n: int) -> list[float]:
    """``n`` timed ``SELECT 1`` requests through the stack (after ``WARMUP`` untimed ones), ms."""
    s = requests.Session()
    s.headers["Authorization"] = f"Token {token}"
    out = []
    for i in range(n + WARMUP):
        t0 = time.perf_counter()
        r = s.post(f"{base}/bench/projects/{project_id}/select1", timeout=60)
        elapsed = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        if i >= WARMUP:
            out.append(elapsed)
    return out


def probe_loop(base: str, project_id: int, token: str, stop: threading.Event, out: list[float], pause_s: float) -> None:
    """Timed ``SELECT 1`` requests, a pause of 0.5x-1.5x ``pause_s`` apart, until ``stop`` is set."""
    s = requests.Session()
    s.headers["Authorization"] = f"Token {token}"
    while not stop.is_set():
        t0 = time.perf_counter()
        r = s.post(f"{base}/bench/projects/{project_id}/select1", timeout=60)
        elapsed = (time.perf_counter() - t0) * 1000
        r.raise_for_status()
        if not stop.is_set():  # a request that ended after the annotators is not beside them
            out.append(elapsed)
        stop.wait(random.uniform(0.5, 1.5) * pause_s)


def annotate_loop(
    base: str, project_id: int, token: str, n: int, out: list[float], errors: list[str], think_s: float = 0.0
) -> None:
    s = requests.Session()
    s.headers["Authorization"] = f"Token {token}"
    for i in range(n):
        t0 = time.perf_counter()
        r = s.post(f"{base}/api/v1/projects/{project_id}/queue/next", timeout=60)
        elapsed = (time.perf_counter() - t0) * 1000
        if r.status_code != 200:
            errors.append(f"{r.status_code} {r.text[:200]}")
            return
        if i >= WARMUP:
            out.append(elapsed)
        item = r.json()
        if think_s:
            time.sleep(random.uniform(0.5, 1.5) * think_s)  # reading the text and pressing a key
        gold = item["document"]["metadata"]["gold"]
        url = f"{base}/api/v1/assignments/{item['assignment']['id']}/annotation"
        r = s.post(url, json={"label": gold}, timeout=60)
        if r.status_code not in (200, 201):
            errors.append(f"label {r.status_code} {r.text[:200]}")
            return


def _client(base: str, project_id: int, key: str, per_client: int, think_s: float, out) -> None:
    """One annotator in its own process: its samples and errors go back through ``out``."""
    mine: list[float] = []
    errors: list[str] = []
    try:
        annotate_loop(base, project_id, key, per_client, mine, errors, think_s)
    except Exception as exc:  # noqa: BLE001 - reported with the row, never lost
        errors.append(repr(exc))
    out.put((mine, errors))


def measure(
    base: str, project_id: int, keys: list[str], per_client: int, think_s: float = 0.0, *, threads: bool = False,
    alongside: Callable[[threading.Event], object] | None = None,
) -> tuple[dict, list[str]]:
    """Each key an annotator: a process of its own (default), as annotators are separate browsers, or
    (``threads``) a thread of this process, where 20 clients share one interpreter lock: a response
    waiting for the lock counts as server latency. ``--client-threads`` measures that in the same run.
    ``alongside(stop)``: run in a thread of this process once the client processes have started; ``stop``
    is set when the last client has finished."""
    samples: list[float] = []
    errors: list[str] = []
    if threads:
        lock = threading.Lock()

        def worker(key: str) -> None:
            mine: list[float] = []
            annotate_loop(base, project_id, key, per_client, mine, errors, think_s)
            with lock:
                samples.extend(mine)

        workers = [threading.Thread(target=worker, args=(k,)) for k in keys]
        t0 = time.perf_counter()
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        wall = time.perf_counter() - t0
        return {**percentiles(samples), "leases_per_s": round(len(keys) * per_client / wall, 1)}, errors
    from django.db import connections

    connections.close_all()  # a forked child must not share the parent's database socket
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_client, args=(base, project_id, k, per_client, think_s, out)) for k in keys]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    stop = threading.Event()
    beside = threading.Thread(target=alongside, args=(stop,)) if alongside is not None else None
    if beside is not None:  # started after the forks: a forked child never inherits its locks
        beside.start()
    for _ in procs:
        mine, more = out.get()
        samples.extend(mine)
        errors.extend(more)
    wall = time.perf_counter() - t0
    stop.set()
    for p in procs:
        p.join()
    if beside is not None:
        beside.join()
    return {**percentiles(samples), "leases_per_s": round(len(keys) * per_client / wall, 1)}, errors


def release_all(project: Project) -> None:
    Assignment.objects.filter(project=project, state=AssignmentState.ACTIVE).update(state=AssignmentState.RELEASED)


def targets_repeat(
    base: str, project: Project, keys: list[str], args: argparse.Namespace, rep: int
) -> dict[str, Any]:
    """One repeat of the interleaved rows: the floor, one annotator, (stress,) paced; both target ratios."""
    release_all(project)
    floor = percentiles(ping_loop(base, project.pk, keys[0], args.single_requests))
    single, errors = measure(base, project.pk, keys[:1], args.single_requests)
    row: dict[str, Any] = {"row": f"repeat {rep}", "select1_through_stack": floor, "one_annotator": single}
    if "stress" not in args.skip:
        many, more = measure(base, project.pk, keys, args.per_client)
        row[f"{args.clients}_annotators_no_pause"] = many
        errors += more
    # The probe: one more client timing the bare SELECT 1 view while the paced annotators label, so the
    # row says how much the host's contention (clients, gunicorn and PostgreSQL on the same cores)
    # stretches any request, the floor included.
    probe: list[float] = []
    paced, more = measure(base, project.pk, keys, args.per_client, args.think_s,
                          alongside=lambda stop: probe_loop(base, project.pk, keys[0], stop, probe, args.think_s / 4))
    row[f"{args.clients}_paced_annotators"] = paced
    row["select1_beside_paced"] = percentiles(probe)
    errors += more
    if args.client_threads:  # the same paced row with every client a thread of one process (the old bench)
        row[f"{args.clients}_paced_annotators_thread_clients"], more = measure(
            base, project.pk, keys, args.per_client, args.think_s, threads=True)
        errors += more
    row |= {
        "think_s": args.think_s,
        "unlabeled_docs": Document.objects.filter(project=project, is_labeled=False).count(),
        "single_p95_over_select1_p95": round(single["p95_ms"] / floor["p95_ms"], 2),
        "paced_p95_over_single_p95": round(paced["p95_ms"] / single["p95_ms"], 2),
        "select1_beside_paced_p95_over_select1_p95": round(row["select1_beside_paced"]["p95_ms"] / floor["p95_ms"], 2),
        "targets": {"single_p95_over_select1_p95": 2.0, "paced_p95_over_single_p95": 1.5},
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "errors": errors[:3],
    }
    print(json.dumps(row), flush=True)
    return row


def medians(rows: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    def med(path: tuple[str, ...]) -> float:
        values = []
        for row in rows:
            value: Any = row
            for key in path:
                value = value[key]
            values.append(value)
        return round(statistics.median(values), 2)

    paced = f"{clients}_paced_annotators"
    return {
        "row": f"medians of {len(rows)} repeats",
        "select1_p95_ms": med(("select1_through_stack", "p95_ms")),
        "one_annotator_p50_ms": med(("one_annotator", "p50_ms")),
        "one_annotator_p95_ms": med(("one_annotator", "p95_ms")),
        "paced_p50_ms": med((paced, "p50_ms")),
        "paced_p95_ms": med((paced, "p95_ms")),
        "single_p95_over_select1_p95": med(("single_p95_over_select1_p95",)),
        "paced_p95_over_single_p95": med(("paced_p95_over_single_p95",)),
        "select1_beside_paced_p95_ms": med(("select1_beside_paced", "p95_ms")),
        "select1_beside_paced_p95_over_select1_p95": med(("select1_beside_paced_p95_over_select1_p95",)),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-client", type=int, default=40)
    parser.add_argument("--think-s", type=float, default=1.0,
                        help="mean time an annotator spends on a document in the paced row (uniform 0.5x-1.5x)")
    parser.add_argument("--single-requests", type=int, default=100,
                        help="requests of the floor and one-annotator rows (a p95 of 20 is their second largest)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats of the target rows")
    parser.add_argument("--skip", default="", help="comma-separated: stress (the no-pause row), team (overlap, review)")
    parser.add_argument("--client-threads", action="store_true",
                        help="also run the paced row with the clients as threads of one process, as before")
    args = parser.parse_args()
    args.skip = {part.strip() for part in args.skip.split(",") if part.strip()}
    print(json.dumps({"machine": machine(), "argv": sys.argv[1:]}), flush=True)
    project = ensure_scored(args.docs)
    # Fresh planner statistics, as autovacuum leaves them (the queue's ranking read no longer depends
    # on them: its LIMIT subquery keeps the index plan; the other statements of a request do).
    analyze()
    release_all(project)
    keys = tokens(args.clients, project)
    port = free_port()
    server = start_server(port)
    base = f"http://127.0.0.1:{port}"
    try:
        rows = [targets_repeat(base, project, keys, args, rep + 1) for rep in range(args.repeats)]
        print(json.dumps(medians(rows, args.clients)), flush=True)
        paced_p95 = statistics.median(row[f"{args.clients}_paced_annotators"]["p95_ms"] for row in rows)
        for name, policy in (
            ("overlap 2", {"overlap": 2, "overlap_scope": "all"}),
            ("a review queue (25% audit)", {"overlap": 1, "review_audit_share": 0.25}),
        ):
            if "team" in args.skip:
                break
            # Overlap 2 on every document rewrites all 100,000 of them; the service refreshes the planner's
            # statistics itself (services/overlap.py), so the bench does not.
            project = project_update_policy(project=project, **policy)
            team, errors = measure(base, project.pk, keys, args.per_client, args.think_s)
            print(json.dumps({"row": f"{args.clients} concurrent annotators, {args.think_s:g} s per document, {name}",
                              **team, "think_s": args.think_s,
                              "p95_vs_single_label": round(team["p95_ms"] / paced_p95, 2),
                              "target_p95_vs_single_label": 1.2, "errors": errors[:3]}), flush=True)
    finally:
        project_update_policy(project=project, overlap=1, review_audit_share=0.0)
        stop_server(server)
    print(json.dumps({"load_avg_after": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
