"""A retrain through a real Celery worker process on the queue and device a GPU host uses, and on CPU.

    BENCH_BROKER_URL=redis://127.0.0.1:6379/7 .venv/bin/python bench/worker_device.py \\
        [--devices cuda,cpu] [--docs 3000] [--labels 1000]

For each device a fresh project of real texts (rt-snippets + trec, 8 labels) gets ``--labels`` gold
labels (bulk-written: set-up, not measured), then a worker process is started the way a deployment
starts it: for ``cuda`` as docker-compose's ``worker-gpu`` (``celery -A workers.app worker --queues
gpu --concurrency 1``, ``MODEL_DEVICE=cuda``), with this process sending work there
(``CELERY_ROUTE_TRAINING=gpu``, ``CELERY_ROUTE_SCORING=gpu``); for ``cpu`` as the CPU worker
(``--queues training,scoring``, ``MODEL_DEVICE=cpu``). Once the worker is ready, ``training_run_request``
and the wall time until the run is done and the champion's predictions cover every document. Each
worker starts with an empty embedding cache, so the time includes encoding every document once (what
a project's first model costs). Prints the device the run recorded (``ModelVersion.calibration
["device"]``), the queue the worker consumed, the run's stage timings, and the ratio cpu / cuda.
Needs a real broker (Redis, or ``filesystem://``); the database may be PostgreSQL or SQLite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT, label_documents, labeled_corpus, machine, setup_django, timer

setup_django()

from django.conf import settings  # noqa: E402

from labeling.models import Document, Prediction, Project, RunStatus, RunTrigger, TrainingRun  # noqa: E402
from labeling.selectors.models import champion_get  # noqa: E402
from labeling.services.documents import document_bulk_create  # noqa: E402
from labeling.services.projects import project_create  # noqa: E402
from labeling.services.training.triggers import training_run_request  # noqa: E402

# device -> (queues the worker consumes, CELERY_ROUTE_TRAINING, CELERY_ROUTE_SCORING)
ROUTES = {"cuda": ("gpu", "gpu", "gpu"), "cpu": ("training,scoring", "training", "scoring")}
READY_S = 300.0
RUN_S = 900.0


def make_project(name: str, n_docs: int, n_labels: int) -> Project:
    texts, labels, names = labeled_corpus()
    Project.objects.filter(name=name).delete()
    # a high threshold: only the run this bench requests trains (labels bulk-written send no task)
    project = project_create(name=name, labels=names, retrain_after=10 * n_labels, seed=0)
    order = range(min(n_docs, len(texts)))
    items = [{"text": texts[i], "external_id": str(i), "metadata": {"gold": labels[i]}} for i in order]
    for start in range(0, len(items), 1000):
        document_bulk_create(project=project, items=items[start : start + 1000])
    label_documents(project, n_labels)
    return project


def start_worker(device: str, log: Path, cache_dir: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MODEL_DEVICE": device,
        "EMBEDDING_CACHE_DIR": cache_dir,
        "CELERY_ROUTE_TRAINING": ROUTES[device][1],  # the worker sends work too (a run's re-scores)
        "CELERY_ROUTE_SCORING": ROUTES[device][2],
        "LOG_LEVEL": "INFO",
    }
    # as docker-compose's worker-gpu runs it (prefork, one process); the CPU worker alike, so the two
    # differ only in device and queues
    args = f"-A workers.app worker --queues {ROUTES[device][0]} -n bench-{device}@%h --concurrency 1 --loglevel INFO"
    cmd = [sys.executable, "-m", "celery", *args.split()]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_S
    while "ready." not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the {device} worker did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)
    return proc


def wait_done(project: Project, run_id: int) -> TrainingRun:
    total = Document.objects.filter(project=project).count()
    deadline = time.monotonic() + RUN_S
    while time.monotonic() < deadline:
        run = TrainingRun.objects.get(pk=run_id)
        if run.status == RunStatus.FAILED:
            raise RuntimeError(f"run failed: {run.error}")
        champion = champion_get(project_id=project.pk)
        if run.status == RunStatus.SUCCEEDED and champion is not None:
            if Prediction.objects.filter(model_version=champion).count() == total:
                return run
        time.sleep(0.2)
    raise RuntimeError(f"run {run_id} not done after {RUN_S:.0f} s")


def one_device(device: str, docs: int, labels: int, workdir: Path) -> dict[str, Any]:
    queues, settings.CELERY_ROUTE_TRAINING, settings.CELERY_ROUTE_SCORING = ROUTES[device]  # where we send
    project = make_project(f"bench worker {device}", docs, labels)
    log = workdir / f"worker-{device}.log"
    worker = start_worker(device, log, tempfile.mkdtemp(dir=workdir, prefix=f"emb-{device}-"))
    try:
        with timer() as t:
            run = training_run_request(project=project, trigger=RunTrigger.MANUAL)
            run = wait_done(project, run.pk)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    mv = run.model_version
    text = log.read_text(errors="replace")
    return {
        "device": device,
        "queues": queues,
        "wall_s": round(t["s"], 2),
        "docs": Document.objects.filter(project=project).count(),
        "labels_used": run.labels_used,
        "promoted": run.promoted,
        "recorded_device": mv.calibration.get("device") if mv else None,
        "holdout_accuracy": (mv.metrics or {}).get("accuracy") if mv else None,
        "train_timings_s": {k: round(v, 2) for k, v in (mv.calibration.get("timings_s", {}) if mv else {}).items()},
        "worker_tasks_succeeded": text.count(" succeeded in "),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", default="cuda,cpu")
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--labels", type=int, default=1000)
    args = parser.parse_args()
    if settings.CELERY_BROKER_URL.startswith("memory://"):
        raise SystemExit("set BENCH_BROKER_URL to a real broker (redis://... or filesystem://)")
    print(json.dumps({"machine": machine(), "broker": settings.CELERY_BROKER_URL.split("@")[-1]}), flush=True)
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for device in args.devices.split(","):
            rows[device] = one_device(device, args.docs, args.labels, Path(tmp))
            print(json.dumps(rows[device]), flush=True)
    if "cuda" in rows and "cpu" in rows:
        print(json.dumps({"cpu_over_cuda_wall": round(rows["cpu"]["wall_s"] / rows["cuda"]["wall_s"], 2)}))


if __name__ == "__main__":
    main()
