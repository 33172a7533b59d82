"""PostgreSQL restarted while annotators label through a real gunicorn server: the API answers 503
with Retry-After while the database is away, the clients retry as the labeling page does
(labeling/ui/static/labeling/common.js), and no label is lost or doubled.

The database is a private PostgreSQL cluster (initdb in a temporary folder, a free port), never the
shared server on 5432. The broker is a Redis database nothing consumes (labels only enqueue checks).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from glob import glob
from pathlib import Path

import psycopg
import pytest
import requests

from tests.support.celery_worker import free_port, wait_until

pytestmark = [pytest.mark.e2e]

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(sorted(glob("/usr/lib/postgresql/*/bin"))[-1]) if glob("/usr/lib/postgresql/*/bin") else None
ANNOTATORS = 4


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses to run as root: run the cluster as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


class PrivatePostgres:
    def __init__(self, workdir: Path) -> None:
        assert PG_BIN is not None
        self.dir, self.port = workdir / "pg", free_port()
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/alabel_fault"

    def _ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.dir), *args]), check=True,
                       capture_output=True, timeout=60)

    def init(self) -> None:
        self.dir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.dir.parent, "postgres")
            shutil.chown(self.dir, "postgres")
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres"]),
                       check=True, capture_output=True, timeout=60)
        self.start()
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE alabel_fault")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._ctl("-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")


@pytest.fixture
def private_pg(tmp_path: Path) -> Iterator[PrivatePostgres]:
    if PG_BIN is None or shutil.which("runuser") is None and os.geteuid() == 0:
        why = "needs PostgreSQL's server binaries (initdb, pg_ctl) and, as root, runuser"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(why + ": under CI this fault test must run, never skip")
        pytest.skip(why)
    workdir = Path(f"/tmp/alabel-pg-{os.getpid()}-{time.monotonic_ns()}")
    workdir.mkdir()
    pg = PrivatePostgres(workdir)
    try:
        pg.init()
        yield pg
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(pg.dir), "-m", "immediate", "stop"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)


SETUP = """
import json
import django
django.setup()
from labeling.services.tokens import token_create
from labeling import roles
from labeling.services.documents import document_bulk_create
from labeling.services.memberships import membership_ensure
from labeling.services.projects import project_create
from tests.factories import UserFactory
project = project_create(name="restart", labels=["fresh", "rotten"], holdout_fraction=0.0, holdout_interleave=0.0)
document_bulk_create(project=project, items=[{"text": f"document {i}"} for i in range(300)])
tokens = []
for i in range(ANNOTATORS):
    user = UserFactory(username=f"a{i}")
    membership_ensure(project=project, user=user, role=roles.ANNOTATOR)
    tokens.append(token_create(user=user)[1])
print(json.dumps({"project": project.pk, "tokens": tokens}))
""".replace("ANNOTATORS", str(ANNOTATORS))


def _env(pg: PrivatePostgres) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": pg.url, "DJANGO_SETTINGS_MODULE": "labeling.settings", "DEBUG": "0",
            "SECRET_KEY": "fault-test-only", "CONN_MAX_AGE": "60", "THROTTLE_USER": "1000000/hour",
            "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/8"),
            "PYTHONPATH": str(ROOT)}


def _annotate(base: str, project: int, token: str, stop: threading.Event, out: dict) -> None:
    """Lease and label until told to stop, retrying 503s and dropped connections like the page does."""
    session = requests.Session()
    session.headers["Authorization"] = f"Token {token}"
    out.update(labeled=[], statuses=[], retry_after=[])

    def send(url: str, body: dict | None = None) -> requests.Response:
        while True:
            try:
                res = session.post(url, json=body or {}, timeout=30)
            except requests.RequestException:
                out["statuses"].append(0)
                time.sleep(0.5)
                continue
            out["statuses"].append(res.status_code)
            if res.status_code != 503:
                return res
            out["retry_after"].append(res.headers.get("Retry-After"))
            time.sleep(min(float(res.headers.get("Retry-After") or 1), 1.0))  # the page waits as told

    while not stop.is_set():
        lease = send(f"{base}/api/v1/projects/{project}/queue/next")
        if lease.status_code == 204:
            return
        assert lease.status_code == 200, lease.text
        item = lease.json()
        labeled = send(f"{base}/api/v1/assignments/{item['assignment']['id']}/annotation", {"label": "fresh"})
        assert labeled.status_code in (200, 201), labeled.text
        out["labeled"].append(item["document"]["id"])


def test_postgres_restart_while_labeling_answers_503_and_loses_no_label(private_pg: PrivatePostgres) -> None:
    env = _env(private_pg)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=120)
    made = subprocess.run([sys.executable, "-c", SETUP], cwd=ROOT, env=env, check=True, capture_output=True,
                          text=True, timeout=60)
    setup = json.loads(made.stdout.strip().splitlines()[-1])
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "labeling.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "2", "--worker-class", "gthread", "--threads", "4", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout=60, what="gunicorn to answer")
        stop, results = threading.Event(), [dict() for _ in setup["tokens"]]
        threads = [threading.Thread(target=_annotate, args=(base, setup["project"], tok, stop, out))
                   for tok, out in zip(setup["tokens"], results, strict=True)]
        for t in threads:
            t.start()
        wait_until(lambda: sum(len(r.get("labeled", [])) for r in results) >= 20, timeout=60,
                   what="labels before the restart")
        private_pg.stop()  # the database goes away while annotators label
        time.sleep(2)
        private_pg.start()
        before = sum(len(r["labeled"]) for r in results)
        wait_until(lambda: sum(len(r["labeled"]) for r in results) >= before + 20, timeout=60,
                   what="labels after the restart")
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=20)

    statuses = [s for r in results for s in r["statuses"]]
    assert 503 in statuses, sorted(set(statuses))  # the outage was answered, not hidden
    hints = [v for r in results for v in r["retry_after"]]
    assert hints and all(v and int(v) > 0 for v in hints)  # every 503 said when to retry
    assert 500 not in statuses
    claimed = [d for r in results for d in r["labeled"]]
    assert len(claimed) == len(set(claimed))  # two annotators never labeled the same document
    with psycopg.connect(private_pg.url.replace("postgres://", "postgresql://")) as conn:
        rows = conn.execute(
            "SELECT a.document_id, u.username FROM labeling_annotation a JOIN auth_user u ON u.id = a.annotator_id"
        ).fetchall()
    stored = sorted(doc for doc, _ in rows)
    assert stored == sorted(claimed)  # every label acknowledged is stored, once; nothing else is
