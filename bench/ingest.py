"""Ingestion throughput: documents/s through the bulk endpoint, against a naive per-row ORM save.

    .venv/bin/python bench/ingest.py [--docs 50000] [--clients 1,4] [--baseline-docs 3000]

Rows (all on PostgreSQL, the bench database; texts are real rt-snippets + trec texts, repeated
with an index suffix beyond the first 18,000 so every document is new):
- baseline: one ``Document.save()`` per row, autocommit (what a naive importer does);
- service: ``document_bulk_create`` in chunks of 1,000, in-process (no HTTP);
- endpoint: ``POST /api/v1/projects/{id}/documents`` with 1,000 documents per request to a real
  gunicorn server (2 sync workers) from 1 and 4 concurrent clients, token auth.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _common import corpus, free_port, machine, setup_django, start_gunicorn, timer

setup_django()

import requests
from django.contrib.auth import get_user_model

from labeling.models import Document, Project, text_hash
from labeling.roles import INGEST
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from labeling.services.tokens import token_create

CHUNK = 1_000


def fresh_project(name: str) -> Project:
    Project.objects.filter(name=name).delete()
    return project_create(name=name, labels=["a", "b"])


def bench_baseline(n: int) -> float:
    project = fresh_project("bench ingest baseline")
    texts = list(corpus(n, suffix=True))
    with timer() as t:
        for i, text in enumerate(texts):
            Document(project=project, external_id=f"b{i}", text=text, content_hash=text_hash(text)).save()
    return n / t["s"]


def bench_service(n: int) -> float:
    project = fresh_project("bench ingest service")
    texts = list(corpus(n, suffix=True))
    with timer() as t:
        for start in range(0, n, CHUNK):
            chunk = texts[start:start + CHUNK]
            items = [{"text": x, "external_id": f"s{start + j}"} for j, x in enumerate(chunk)]
            document_bulk_create(project=project, items=items)
    return n / t["s"]


def start_server(port: int) -> subprocess.Popen[bytes]:
    return start_gunicorn(port, "-w", "2", "--timeout", "120")


def bench_endpoint(port: int, user: Any, token: str, n: int, clients: int) -> float:
    project = fresh_project(f"bench ingest endpoint x{clients}")
    membership_ensure(project=project, user=user, role=INGEST)
    texts = list(corpus(n, suffix=True))
    url = f"http://127.0.0.1:{port}/api/v1/projects/{project.pk}/documents/"
    bodies = [
        json.dumps([{"text": x, "external_id": f"e{start + j}"}
                    for j, x in enumerate(texts[start:start + CHUNK])])
        for start in range(0, n, CHUNK)
    ]

    def post(body: str) -> None:
        with requests.Session() as s:
            r = s.post(url, data=body, headers={"Authorization": f"Token {token}",
                                                "Content-Type": "application/json"}, timeout=300)
            r.raise_for_status()

    with timer() as t, ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, bodies))
    stored = Document.objects.filter(project=project).count()
    if stored != n:
        raise RuntimeError(f"endpoint stored {stored} of {n} documents")
    return n / t["s"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--baseline-docs", type=int, default=3_000)
    parser.add_argument("--clients", default="1,4")
    args = parser.parse_args()
    print(json.dumps({"machine": machine()}))
    baseline = bench_baseline(args.baseline_docs)
    print(json.dumps({"row": "baseline: per-row ORM save", "docs": args.baseline_docs,
                      "docs_per_s": round(baseline)}))
    service = bench_service(args.docs)
    print(json.dumps({"row": "document_bulk_create, in-process", "docs": args.docs,
                      "docs_per_s": round(service), "vs_baseline": round(service / baseline, 1)}))
    user, _ = get_user_model().objects.get_or_create(username="bench-ingest")
    _, token = token_create(user=user, client="bench")
    port = free_port()
    server = start_server(port)
    try:
        for clients in [int(c) for c in args.clients.split(",")]:
            rate = bench_endpoint(port, user, token, args.docs, clients)
            print(json.dumps({"row": f"POST /documents/ x1000, {clients} client(s), gunicorn -w 2",
                              "docs": args.docs, "docs_per_s": round(rate),
                              "vs_baseline": round(rate / baseline, 1), "target_docs_per_s": 2000}))
    finally:
        server.terminate()
        server.wait(10)
    print(json.dumps({"load_avg_after": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
    main()
