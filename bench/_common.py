"""Shared set-up for the service benchmarks: a dedicated PostgreSQL database, real texts, machine facts.

Benchmarks print figures; nothing here is asserted. Run from the repository root, e.g.
``.venv/bin/python bench/ingest.py``. BENCH_DATABASE_URL (default ``alabel_bench`` on the local
server) is created if missing and migrated.
"""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/alabel_bench"


def setup_django() -> None:
    """Point Django at the bench database (created if missing), migrate, and keep the broker in memory."""
    # SIGTERM (e.g. from ``timeout``) unwinds like Ctrl+C, so ``finally`` blocks stop the servers we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                       "DJANGO_SETTINGS_MODULE": "labeling.settings"}.items():
        os.environ.setdefault(key, value)
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_DB)
    os.environ["DATABASE_URL"] = url
    # Tasks the services send go nowhere: each bench runs the work it measures itself.
    os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "memory://")
    os.environ.setdefault("VAR_DIR", str(ROOT / "var" / "bench"))
    # Artifacts per bench database: two databases both number their first project's first model
    # "project1-v1-run1", and one bench overwrote the other's artifact (the load refused it as tampered).
    # The embedding cache is keyed by text and encoder, so every bench database shares one.
    database = Path(url.rpartition("/")[2]).stem or "default"
    os.environ.setdefault("ARTIFACT_DIR", str(Path(os.environ["VAR_DIR"]) / "artifacts" / database))
    os.environ.setdefault("EMBEDDING_CACHE_DIR", str(Path(os.environ["VAR_DIR"]) / "artifacts" / "embeddings"))
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    _create_database(url)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _create_database(url: str) -> None:
    if not url.startswith(("postgres://", "postgresql://")):
        return  # SQLite (e.g. a GPU host without PostgreSQL): Django creates the file
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def machine() -> dict[str, Any]:
    """Cores, CPU model, torch dtype and load average at measurement time (the CPU is shared)."""
    model = ""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        lines = out.splitlines()
        model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Model name")), "")
    except FileNotFoundError:
        pass
    info: dict[str, Any] = {
        "cores": os.cpu_count(), "cpu": model or platform.processor(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()], "host": socket.gethostname(),
    }
    try:
        import torch

        from modelsvc.encoder import select_device, select_dtype

        info["torch_dtype"] = str(select_dtype("auto", select_device("auto"))).replace("torch.", "")
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - machine facts are best effort
        pass
    return info


def real_texts() -> list[tuple[str, str]]:
    """rt-snippets and trec, (text, label) in file order: 18,000 real human-written texts."""
    from modelsvc.datasets import load_builtin

    out: list[tuple[str, str]] = []
    for name in ("rt-snippets", "trec"):
        texts, labels = load_builtin(name)
        out.extend(zip(texts, labels, strict=True))
    return out


def corpus(n: int, *, suffix: bool) -> Iterator[str]:
    """``n`` real texts, cycling; with ``suffix`` each repeat gets " [#i]" so every text is distinct."""
    base = [t for t, _ in real_texts()]
    for i in range(n):
        text = base[i % len(base)]
        yield f"{text} [#{i}]" if suffix and i >= len(base) else text


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    import numpy as np

    a = np.asarray(samples_ms)
    return {"n": int(a.size), "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2), "p99_ms": round(float(np.percentile(a, 99)), 2),
            "mean_ms": round(float(a.mean()), 2)}


@contextmanager
def timer() -> Iterator[dict[str, float]]:
    box: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - t0


def free_port(start: int = 8411, end: int = 8420) -> int:
    """The first free port of ``start``-``end``, or of ``BENCH_PORTS`` (e.g. ``8621-8629``) when set: several
    benches on one machine each get their own range."""
    if os.environ.get("BENCH_PORTS"):
        start, end = (int(part) for part in os.environ["BENCH_PORTS"].split("-"))
    for port in range(start, end + 1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {start}-{end}")


# --- projects built for the benches (Django must be set up first) ---------------------------------


def labeled_corpus() -> tuple[list[str], list[str], list[str]]:
    """(texts, labels, label names): rt-snippets + trec, deduplicated; 8 labels (2 + 6 classes)."""
    seen: set[str] = set()
    texts: list[str] = []
    labels: list[str] = []
    for text, label in real_texts():
        if text not in seen:
            seen.add(text)
            texts.append(text)
            labels.append(label)
    return texts, labels, sorted(set(labels))


def ensure_project(name: str, n_docs: int) -> Any:
    """A project of ``n_docs`` documents cycling through the real texts (no suffix: repeats share the
    encoder cache entry, so 100,000 documents cost 18,000 encodes). Reused when already complete."""
    from labeling.models import Document, Project
    from labeling.services.documents import document_bulk_create
    from labeling.services.projects import project_create

    texts, labels, names = labeled_corpus()
    project = Project.objects.filter(name=name).first()
    if project is not None and Document.objects.filter(project=project).count() == n_docs:
        return project
    Project.objects.filter(name=name).delete()
    project = project_create(name=name, labels=names)
    for start in range(0, n_docs, 1000):
        items = [
            {"text": texts[j], "external_id": str(i), "metadata": {"gold": labels[j]}}
            for i in range(start, min(n_docs, start + 1000))
            for j in [i % len(texts)]
        ]
        document_bulk_create(project=project, items=items)
    return project


def warm_cache(texts: list[str]) -> float:
    """Encode ``texts`` into the service's embedding cache; returns seconds (0 when all cached)."""
    from labeling.services import modeling

    encoder = modeling.encoder_for()
    cache = modeling.embedding_cache_for(encoder.encoder_id)
    t0 = time.perf_counter()
    encoder.encode(texts, cache=cache)
    return time.perf_counter() - t0


def label_documents(project: Any, n: int, *, username: str = "bench-annotator") -> int:
    """Give ``n`` more documents (pool and holdout, oldest first) their gold label as annotations.

    Bench set-up, not a measured path: rows are bulk-written the way the annotation service leaves them.
    """
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from labeling.models import Annotation, AnnotationSource, Document

    user, _ = get_user_model().objects.get_or_create(username=username)
    docs = list(Document.objects.filter(project=project, is_labeled=False).order_by("id")[:n])
    with transaction.atomic():
        Annotation.objects.bulk_create([
            Annotation(
                document=d, project=project, annotator=user, label=d.metadata["gold"], source=AnnotationSource.API
            )
            for d in docs
        ])
        Document.objects.filter(pk__in=[d.pk for d in docs]).update(is_labeled=True)
    return len(docs)


def analyze() -> None:
    """Refresh planner statistics, as autovacuum does some time after a bulk load.

    Right after loading tens of thousands of rows the statistics say "empty table" and PostgreSQL
    picks nested-loop plans for the queue and "unscored documents" queries that take seconds.
    """
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("labeling_document", "labeling_prediction", "labeling_assignment", "labeling_annotation"):
            cursor.execute(f"ANALYZE {table}")


def start_gunicorn(port: int, *extra_args: str, env_extra: dict[str, str] | None = None) -> Any:
    """A real gunicorn serving the service on ``port`` (DEBUG off, generous user throttle); waits for /healthz."""
    import requests

    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench-only", "ALLOWED_HOSTS": "127.0.0.1",
           "THROTTLE_USER": "100000000/hour", **(env_extra or {})}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "labeling.wsgi", "-b", f"127.0.0.1:{port}",
         "--log-level", "warning", *extra_args],
        stdout=subprocess.DEVNULL, cwd=ROOT, env=env,
    )
    try:
        for _ in range(600):  # importing Django, DRF and torch takes a while on a busy machine
            try:
                requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                return proc
            except requests.RequestException:  # refused or still importing
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")
    except BaseException:
        proc.terminate()
        raise
