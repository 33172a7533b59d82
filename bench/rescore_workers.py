"""Re-score one project with 1, 2 and 4 real Celery worker processes (``SCORING_SLICES`` = workers).

    BENCH_BROKER_URL=redis://127.0.0.1:6379/5 .venv/bin/python bench/rescore_workers.py [--docs 20000] [--workers 1,2,4]

The project (``--docs`` documents cycling through the rt-snippets + trec texts, embedding cache
warm) and its champion are made as in ``bench/rescore.py``. For each worker count: the champion's
predictions are deleted (as right after a promotion), that many ``celery worker --pool solo
--queues scoring`` processes are started and waited for, one RESCORE_POOL message is sent, and the
wall time until every document has a prediction is printed (the workers' first task loads the
model: included). Needs a Redis broker (BENCH_BROKER_URL); the workers use the bench database.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from _common import ROOT, ensure_project, labeled_corpus, machine, setup_django, warm_cache

setup_django()

import redis
from django.conf import settings
from rescore import ensure_champion

from labeling.models import Document, Prediction, TrainingRun
from labeling.services.dispatch import TaskName, enqueue

PROJECT = "bench workers"


def start_workers(n: int, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SCORING_SLICES": str(n),
        "SCORING_SLICE_MIN_DOCS": "1000",
        "LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    }
    procs = []
    for i in range(n):
        log = (log_dir / f"worker-{n}-{i}.log").open("wb")
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "--pool",
            "solo",
            "--queues",
            "scoring",
            "--loglevel",
            "INFO",
            "-n",
            f"bench{n}-{i}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        procs.append(
            subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
    deadline = time.monotonic() + 600
    while not all(" ready." in (log_dir / f"worker-{n}-{i}.log").read_text(errors="replace") for i in range(n)):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise SystemExit(f"workers did not start; see {log_dir}")
        time.sleep(0.5)
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        p.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--workers", default="1,2,4")
    args = parser.parse_args()
    if not str(settings.CELERY_BROKER_URL).startswith("redis://"):
        raise SystemExit("set BENCH_BROKER_URL=redis://host:port/db: the workers need a real broker")
    print(json.dumps({"machine": machine()}))
    texts, _, _ = labeled_corpus()
    warm_cache(texts)
    project = ensure_project(PROJECT, args.docs)
    run_id, champion_id = ensure_champion(project)
    total = Document.objects.filter(project=project).count()
    log_dir = ROOT / "var" / "bench" / "rescore_workers"
    log_dir.mkdir(parents=True, exist_ok=True)
    for n in [int(x) for x in args.workers.split(",")]:
        redis.Redis.from_url(str(settings.CELERY_BROKER_URL)).flushdb()
        Prediction.objects.filter(model_version_id=champion_id).delete()
        TrainingRun.objects.filter(pk=run_id).update(stage="rescore", progress=0.0)
        procs = start_workers(n, log_dir)
        try:
            t0 = time.perf_counter()
            enqueue(TaskName.RESCORE_POOL, args=(run_id, champion_id))
            while Prediction.objects.filter(model_version_id=champion_id).count() < total:
                time.sleep(0.25)
            wall = time.perf_counter() - t0
        finally:
            stop_workers(procs)
        print(
            json.dumps(
                {
                    "row": f"re-score {total:,} docs with {n} worker process(es), SCORING_SLICES={n}",
                    "wall_s": round(wall, 1),
                    "docs_per_s": round(total / wall),
                    "load_avg_1": round(os.getloadavg()[0], 1),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
