"""20 annotators hammering a real gunicorn server on PostgreSQL: no double leases, no lost labels.

The server is a subprocess on this helper's port, reading the test database that this test fills
(``transactional_db``: the rows are committed, so another process sees them).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings
from rest_framework.authtoken.models import Token

from labeling import roles
from labeling.models import Annotation, Assignment, AssignmentState, Document, ModelStatus, Prediction
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create, project_update_policy
from tests.factories import ModelVersionFactory, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PORT = int(os.environ.get("API_E2E_PORT", "8101"))
ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 20
CYCLES = 50


def _database_url() -> str:
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def server(transactional_db) -> Iterator[str]:
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "DJANGO_SETTINGS_MODULE": "labeling.settings",
        "DEBUG": "0",
        "SECRET_KEY": "e2e-only",
        "CONN_MAX_AGE": "60",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "labeling.wsgi:application",
            "--bind",
            f"127.0.0.1:{PORT}",
            "--workers",
            "3",
            "--worker-class",
            "gthread",
            "--threads",
            "8",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{PORT}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still importing
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start: {proc.stderr.read().decode()[-2000:]}")  # type: ignore
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _purge_queues()


def _purge_queues() -> None:
    """No worker runs here: drop the retrain / scoring messages this test sent to its own broker DB."""
    if settings.CELERY_BROKER_URL.startswith("redis://"):
        import redis

        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(
            settings.CELERY_ROUTE_SCORING, settings.CELERY_ROUTE_TRAINING
        )


def _scored_project(n_docs: int):
    project = project_create(
        name="race",
        labels=["fresh", "rotten"],
        holdout_fraction=0.1,
        holdout_interleave=0.1,
        lease_minutes=10,
    )
    items = [{"text": f"document {i} about topic {i % 37}", "external_id": f"d{i}"} for i in range(n_docs)]
    for start in range(0, n_docs, 1000):
        document_bulk_create(project=project, items=items[start : start + 1000])
    champion = ModelVersionFactory(project=project, version=1, status=ModelStatus.CHAMPION)
    rng = random.Random(7)
    Prediction.objects.bulk_create(
        [
            Prediction(
                document=doc,
                model_version=champion,
                probabilities=[0.5, 0.5],
                predicted_label="fresh",
                confidence=0.5,
                entropy=0.69,
                expected_entropy=0.6,
                mutual_info=0.09,
                margin=0.0,
                acquisition_score=rng.random(),
                map_x=rng.random(),
                map_y=rng.random(),
            )
            for doc in Document.objects.filter(project=project)
        ]
    )
    return project


def test_concurrent_annotators_never_share_a_document_and_lose_no_label(server: str) -> None:
    project = _scored_project(CLIENTS * CYCLES + 200)
    tokens = []
    for i in range(CLIENTS):
        user = UserFactory(username=f"racer{i}", password="x")
        membership_ensure(project=project, user=user, role=roles.ANNOTATOR)
        tokens.append(Token.objects.create(user=user).key)

    labeled: list[tuple[int, int, str, int]] = []  # (user index, document id, label, annotation id)
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def annotate(index: int) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {tokens[index]}"
        rng = random.Random(index)
        start.wait()
        for _ in range(CYCLES):
            got = session.post(f"{server}/api/v1/projects/{project.pk}/queue/next", timeout=60)
            if got.status_code != 200:
                with lock:
                    failures.append(f"next {got.status_code} {got.text[:200]}")
                return
            item = got.json()
            label = rng.choice(["fresh", "rotten"])
            done = session.post(
                f"{server}/api/v1/assignments/{item['assignment']['id']}/annotation",
                json={"label": label, "duration_ms": rng.randint(500, 5000)},
                timeout=60,
            )
            if done.status_code != 201:
                with lock:
                    failures.append(f"label {done.status_code} {done.text[:200]}")
                return
            with lock:
                labeled.append((index, item["document"]["id"], label, done.json()["id"]))

    threads = [threading.Thread(target=annotate, args=(i,)) for i in range(CLIENTS)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    elapsed = time.monotonic() - began
    print(
        f"\n{len(labeled)} next+label cycles by {CLIENTS} clients in {elapsed:.1f}s "
        f"({2 * len(labeled) / elapsed:.0f} requests/s)"
    )

    assert failures == []
    assert len(labeled) == CLIENTS * CYCLES
    # No document went to two annotators: every handed-out document is distinct ...
    handed = Counter(doc for _, doc, _, _ in labeled)
    assert max(handed.values()) == 1
    # ... and the database agrees: one assignment per document, all finished as done.
    per_doc = Counter(
        Assignment.objects.filter(document__project=project).values_list("document_id", flat=True)
    )
    assert max(per_doc.values()) == 1
    assert set(Assignment.objects.filter(document__project=project).values_list("state", flat=True)) == {
        AssignmentState.DONE
    }
    # Every label stored exactly once, as sent, by the annotator who sent it.
    stored = {
        a.pk: (a.document_id, a.label, a.annotator.username)
        for a in Annotation.objects.filter(document__project=project).select_related("annotator")
    }
    assert len(stored) == CLIENTS * CYCLES
    assert stored == {aid: (doc, label, f"racer{i}") for i, doc, label, aid in labeled}
    assert Document.objects.filter(project=project, is_labeled=True).count() == CLIENTS * CYCLES
    # Holdout items were interleaved (about 10%), never with a prediction attached.
    holdout = Assignment.objects.filter(document__project=project, reason__holdout=True).count()
    assert 0 < holdout < CLIENTS * CYCLES * 0.3


OVERLAP = 2
OVERLAP_DOCS = 150


def test_with_overlap_no_annotator_labels_a_document_twice_and_none_gets_too_many(server: str) -> None:
    """Overlap 2 under 20 concurrent annotators: two labels per document, by two different people."""
    project = _scored_project(OVERLAP_DOCS)
    project_update_policy(project=project, overlap=OVERLAP)
    tokens = []
    for i in range(CLIENTS):
        user = UserFactory(username=f"pair{i}", password="x")
        membership_ensure(project=project, user=user, role=roles.ANNOTATOR)
        tokens.append(Token.objects.create(user=user).key)

    labeled: list[tuple[int, int, str, int]] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def annotate(index: int, *, wait: bool) -> None:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {tokens[index]}"
        rng = random.Random(index)
        if wait:
            start.wait()
        while True:
            got = session.post(f"{server}/api/v1/projects/{project.pk}/queue/next", timeout=60)
            if got.status_code == 204:
                return  # nothing left for this annotator (right now)
            if got.status_code != 200:
                with lock:
                    failures.append(f"next {got.status_code} {got.text[:200]}")
                return
            item = got.json()
            label = rng.choice(["fresh", "rotten"])
            done = session.post(
                f"{server}/api/v1/assignments/{item['assignment']['id']}/annotation",
                json={"label": label},
                timeout=60,
            )
            if done.status_code != 201:
                with lock:
                    failures.append(f"label {done.status_code} {done.text[:200]}")
                return
            with lock:
                labeled.append((index, item["document"]["id"], label, done.json()["id"]))

    threads = [threading.Thread(target=annotate, args=(i,), kwargs={"wait": True}) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    # An annotator may meet an empty queue while the last places are being labeled by others (a row
    # being labeled is passed by): one more pass, one annotator at a time, finishes what is left.
    for i in range(CLIENTS):
        annotate(i, wait=False)

    assert failures == []
    pairs = Counter((i, doc) for i, doc, _, _ in labeled)
    assert max(pairs.values()) == 1  # nobody labeled a document twice
    per_doc = Counter(doc for _, doc, _, _ in labeled)
    assert set(per_doc.values()) == {OVERLAP}  # every document got exactly its two labels
    assert len(per_doc) == OVERLAP_DOCS
    stored = {
        a.pk: (a.document_id, a.label, a.annotator.username)
        for a in Annotation.objects.filter(document__project=project).select_related("annotator")
    }
    assert stored == {aid: (doc, label, f"pair{i}") for i, doc, label, aid in labeled}  # none lost
    assert Document.objects.filter(project=project, is_labeled=True).count() == OVERLAP_DOCS
    assert not Assignment.objects.filter(document__project=project, state=AssignmentState.ACTIVE).exists()
