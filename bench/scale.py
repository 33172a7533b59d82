"""A project of N documents end to end: ingest, first scoring, queue/next, dashboard, stats, export, retrain.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/alabel_bench_scale \
        nice .venv/bin/python bench/scale.py --docs 100000 [--repeats 2] [--reuse]

Documents are real texts: rt-snippets + trec (about 18,000 unique texts, see bench/README.md) repeated
with distinct external ids, the text unchanged, so the embedding cache (keyed by the text) holds one
vector per unique text and every later repeat is a cache hit; the run prints how many texts were
encoded. Its own database (default ``alabel_bench_scale``), created and migrated on first use.

Rows, each printed as soon as it is measured (a long run that is stopped keeps what it printed):

- ingest: documents/s through ``document_bulk_create`` (what ``POST .../documents/`` calls), 1,000 per call;
- first model (1,000 gold labels) and first scoring of the whole pool through the scoring task's
  function, with the process's RSS sampled every 0.5 s (the worker's memory: it must not grow with N);
- queue/next over HTTP (gunicorn 4 x 5 threads, as bench/queue_latency.py): one annotator, then 20
  annotators pausing ``--think-s`` per document; and in the same run the floor, one ``SELECT 1`` view
  behind the same gunicorn, DRF, token authentication, membership gate and throttles
  (bench/_stack_ping.py). Statements per queue/next request are counted in process;
- the project's dashboard document and ``/stats`` (in process, the selectors the views call), with
  their statement counts;
- the export (JSONL over HTTP, streamed), rows/s and MB/s;
- a retrain (500 more labels) and the re-score of the pool for the new champion, RSS sampled.

Every latency row runs ``--repeats`` times, interleaved. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/alabel_bench_scale")

from _common import analyze, free_port, label_documents, machine, real_texts, setup_django, timer

setup_django()

import requests
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext

from labeling.models import Assignment, AssignmentState, Document, ModelVersion, Prediction, Project, RunTrigger
from labeling.roles import ANNOTATOR, MANAGER
from labeling.selectors.dashboard import dashboard
from labeling.selectors.models import champion_get
from labeling.selectors.stats import project_stats
from labeling.services import modeling
from labeling.services.assignments import lease_next
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from labeling.services.scoring import model_version_rescore
from labeling.services.tokens import token_create
from labeling.services.training.runs import training_run_execute
from labeling.services.training.triggers import training_run_request

BATCH = 1000


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


# --- the worker's memory ----------------------------------------------------------------------------


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """This process's RSS every ``every_s`` seconds while the block runs (the worker runs in-process)."""

    def __init__(self, every_s: float = 0.5) -> None:
        self.every_s, self.samples, self._stop = every_s, [], threading.Event()

    def __enter__(self) -> RssSampler:
        self.samples.append(rss_mb())
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append(rss_mb())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(rss_mb())

    def figures(self) -> dict[str, Any]:
        s = self.samples
        tenth = max(1, len(s) // 10)
        return {
            "rss_start_mb": round(s[0]),
            "rss_peak_mb": round(max(s)),
            "rss_end_mb": round(s[-1]),
            # growth over the run after warm-up: the first tenth against the last tenth
            "rss_first_tenth_max_mb": round(max(s[:tenth])),
            "rss_last_tenth_max_mb": round(max(s[-tenth:])),
            "rss_samples": len(s),
        }


# --- building the project ---------------------------------------------------------------------------


def build(name: str, n_docs: int) -> Project:
    """A fresh project of ``n_docs`` documents through the ingest service, ``BATCH`` per call."""
    texts = real_texts()
    names = sorted({label for _, label in texts})
    Project.objects.filter(name=name).delete()
    project = project_create(name=name, labels=names)
    emit(
        {
            "row": "corpus",
            "docs": n_docs,
            "unique_texts": len({t for t, _ in texts}),
            "note": "rt-snippets + trec repeated in file order with distinct external ids, text unchanged",
        }
    )
    done, t0 = 0, time.perf_counter()
    with timer() as t:
        for start in range(0, n_docs, BATCH):
            items = [
                {
                    "text": texts[i % len(texts)][0],
                    "external_id": f"s{i}",
                    "metadata": {"gold": texts[i % len(texts)][1]},
                }
                for i in range(start, min(n_docs, start + BATCH))
            ]
            document_bulk_create(project=project, items=items)
            done += len(items)
            if done % (BATCH * 100) == 0 or done == n_docs:
                emit({"progress": "ingest", "docs": done, "s": round(time.perf_counter() - t0, 1)})
    emit(
        {
            "row": "ingest (document_bulk_create, 1,000 per call)",
            "docs": n_docs,
            "wall_s": round(t["s"], 1),
            "docs_per_s": round(n_docs / t["s"]),
        }
    )
    return project


def cache_rows() -> int:
    """Vectors in the embedding cache (a SQLite file keyed by the text's SHA-256)."""
    import sqlite3

    encoder = modeling.encoder_for()
    path = modeling.embedding_cache_for(encoder.encoder_id).path
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM embeddings").fetchone()[0])


def score_pool(run_id: int, champion_id: int, label: str) -> None:
    """Run the re-score task's function until the champion has scored every document; RSS sampled."""
    project_id = ModelVersion.objects.get(pk=champion_id).project_id
    total = Document.objects.filter(project_id=project_id).count()
    before = Prediction.objects.filter(model_version_id=champion_id).count()
    calls = 0
    with RssSampler() as rss, timer() as t:
        while True:
            report = model_version_rescore(run_id=run_id, model_version_id=champion_id)
            calls += 1
            if not report.remaining:
                break
    scored = Prediction.objects.filter(model_version_id=champion_id).count() - before
    emit(
        {
            "row": label,
            "docs": total,
            "scored_here": scored,
            "already_scored_by_training": before,
            "wall_s": round(t["s"], 1),
            "docs_per_s": round(scored / t["s"]) if scored else None,
            "task_calls": calls,
            **rss.figures(),
        }
    )


def train(project: Project, label: str) -> tuple[int, int]:
    with RssSampler() as rss, timer() as t:
        run = training_run_request(project=project, trigger=RunTrigger.MANUAL)
        run = training_run_execute(run_id=run.pk)
    assert run is not None and run.promoted, run and run.error
    emit({"row": label, "wall_s": round(t["s"], 1), "model_version": run.model_version_id, **rss.figures()})
    return run.pk, run.model_version_id


# --- latency over HTTP ------------------------------------------------------------------------------


def team_tokens(project: Project, n: int) -> list[str]:
    out = []
    for i in range(n):
        user, _ = get_user_model().objects.get_or_create(username=f"scale-annotator-{i + 1}")
        membership_ensure(project=project, user=user, role=ANNOTATOR)
        out.append(token_create(user=user, client="bench")[1])
    return out


def lease_profile(project: Project) -> dict[str, Any]:
    """Statements one in-process ``lease_next`` issues (the service call behind queue/next), and each
    SELECT's EXPLAIN ANALYZE time and plan (run again afterwards, on the same data)."""
    user, _ = get_user_model().objects.get_or_create(username="scale-profiler")
    membership_ensure(project=project, user=user, role=ANNOTATOR)
    with CaptureQueriesContext(connection) as ctx, timer() as t:
        lease_next(project=project, annotator=user)
    Assignment.objects.filter(annotator=user, state=AssignmentState.ACTIVE).update(state=AssignmentState.RELEASED)
    plans = []
    with connection.cursor() as cursor:
        for q in ctx.captured_queries:
            sql = q["sql"]
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                plans.append({"sql": sql[:120], "ms": round(float(q["time"]) * 1000, 2)})
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
            plan = [r[0] for r in cursor.fetchall()]
            plans.append({"sql": sql[:120], "ms": round(float(q["time"]) * 1000, 2), "plan": plan})
    return {
        "lease_next_statements": len(ctx.captured_queries),
        "lease_next_ms_in_process": round(t["s"] * 1000, 1),
        "statements": plans,
    }


def latency_rows(project: Project, args: argparse.Namespace) -> None:
    from queue_latency import medians, start_server, stop_server, targets_repeat

    keys = team_tokens(project, args.clients)
    port = free_port()
    server = start_server(port)
    base = f"http://127.0.0.1:{port}"
    try:
        # The same interleaved rows as bench/queue_latency.py (the floor, one annotator, the paced team with
        # the SELECT 1 probe beside it); each row gives the unlabeled pool left.
        rows_args = argparse.Namespace(single_requests=args.single_requests, per_client=args.per_client,
                                       think_s=args.think_s, clients=args.clients, skip={"stress"},
                                       client_threads=False)
        rows = [targets_repeat(base, project, keys, rows_args, rep + 1) for rep in range(args.repeats)]
        emit({**medians(rows, args.clients), "pool_documents": Document.objects.filter(project=project).count()})
        export_rows(base, project, args.export_rows, args.export_repeats)
    finally:
        stop_server(server)


def export_rows(base: str, project: Project, max_rows: int = 0, repeats: int = 2) -> None:
    """The JSONL export over HTTP, streamed; ``max_rows`` > 0: the client stops reading after that many rows
    (the rate of a stream is the same at its start; a 1M export takes ~20 min at ~800 rows/s)."""
    owner = get_user_model().objects.get(username="scale-owner")
    key = token_create(user=owner, client="bench")[1]
    for rep in range(repeats):
        lines = size = 0
        with timer() as t:
            with requests.get(
                f"{base}/api/v1/projects/{project.pk}/export?format=jsonl",
                stream=True,
                headers={"Authorization": f"Token {key}"},
                timeout=600,
            ) as r:
                r.raise_for_status()
                for chunk in r.iter_content(chunk_size=1 << 16):
                    size += len(chunk)
                    lines += chunk.count(b"\n")
                    if max_rows and lines >= max_rows:
                        break
        emit(
            {
                "row": f"export JSONL over HTTP, repeat {rep + 1}",
                "rows": lines,
                "stopped_after_max_rows": bool(max_rows and lines >= max_rows),
                "mb": round(size / 1e6, 1),
                "wall_s": round(t["s"], 2),
                "rows_per_s": round(lines / t["s"]),
                "mb_per_s": round(size / 1e6 / t["s"], 1),
            }
        )


def read_rows(project: Project, repeats: int) -> None:
    """The dashboard's and /stats' selectors: with the pool figures computed, then read from the cache."""
    from django.core.cache import cache

    owner = get_user_model().objects.get(username="scale-owner")
    for rep in range(repeats):
        cache.clear()
        for name, call in (
            ("dashboard", lambda: dashboard(project=project, user=owner)),
            ("stats", lambda: project_stats(project)),
        ):
            for how in ("pool figures computed", "pool figures from the cache"):
                with CaptureQueriesContext(connection) as ctx, timer() as t:
                    call()
                slowest = sorted(ctx.captured_queries, key=lambda q: -float(q["time"]))[:4]
                emit(
                    {
                        "row": f"{name} (in process, the view's selector), {how}, repeat {rep + 1}",
                        "ms": round(t["s"] * 1000, 1),
                        "statements": len(ctx.captured_queries),
                        "slowest": [{"ms": round(float(q["time"]) * 1000, 1), "sql": q["sql"][:160]} for q in slowest],
                    }
                )


def disk_row() -> dict[str, Any]:
    """Bytes per row of the two tables that grow with N (every project in the bench database, indexes included)."""
    out: dict[str, Any] = {"row": "disk (pg_total_relation_size / rows, all projects in this database)"}
    with connection.cursor() as cursor:
        for table in ("labeling_document", "labeling_prediction"):
            cursor.execute(f"SELECT pg_total_relation_size('{table}'), (SELECT count(*) FROM {table})")
            size, rows = cursor.fetchone()
            out[table] = {"rows": rows, "mb": round(size / 1e6), "bytes_per_row": round(size / max(rows, 1))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--per-client", type=int, default=40)
    parser.add_argument("--single-requests", type=int, default=100)
    parser.add_argument("--export-rows", type=int, default=0, help="stop reading the export after this many rows")
    parser.add_argument("--export-repeats", type=int, default=2)
    parser.add_argument("--think-s", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--reuse", action="store_true", help="keep a complete project from an earlier run")
    parser.add_argument("--skip", default="", help="comma list of phases to skip: latency,reads,retrain")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    emit({"machine": machine(), "database": os.environ["DATABASE_URL"].rsplit("/", 1)[-1]})
    name = f"bench scale {args.docs}"
    project = Project.objects.filter(name=name).first()
    reuse = (
        args.reuse
        and project is not None
        and Document.objects.filter(project=project).count() == args.docs
        and champion_get(project_id=project.pk)
    )
    owner, _ = get_user_model().objects.get_or_create(username="scale-owner")
    if not reuse:
        cached_before = cache_rows()
        project = build(name, args.docs)
        analyze()
        label_documents(project, 1000, username="scale-labeler")
        run_id, champion_id = train(project, "first model, 1,000 labels (train, calibrate, gate, promote)")
        score_pool(run_id, champion_id, "first scoring of every document (the re-score task's function)")
        emit(
            {
                "row": "embedding cache",
                "vectors_before": cached_before,
                "vectors_after": cache_rows(),
                "note": "keyed by text: a repeated text is encoded once, later repeats read the cached vector",
            }
        )
        analyze()
    membership_ensure(project=project, user=owner, role=MANAGER)
    emit(disk_row())
    emit({"row": "queue/next profile: lease_next in process, EXPLAIN ANALYZE per SELECT", **lease_profile(project)})
    if "reads" not in skip:
        read_rows(project, args.repeats)
    if "latency" not in skip:
        latency_rows(project, args)
    if "retrain" not in skip:
        label_documents(project, 500, username="scale-labeler")
        run_id, champion_id = train(project, "retrain, +500 labels (train, calibrate, gate, promote)")
        score_pool(run_id, champion_id, "re-score the pool for the new champion, warm embedding cache")
    emit({"load_avg_after": [round(x, 2) for x in os.getloadavg()]})


if __name__ == "__main__":
    main()
