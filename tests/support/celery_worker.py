"""Real Celery worker (and Redis) processes for tests.

Usage, from any test package's ``conftest.py``::

    from tests.support.celery_worker import celery_worker, celery_worker_factory, redis_server  # noqa: F401

    @pytest.mark.django_db(transaction=True)
    def test_something(celery_worker):          # a worker on every queue kind is ready
        ...                                      # services enqueue; the worker does the work
        celery_worker.kill()                     # SIGKILL, like a crashed host
        celery_worker.start()                    # and back

``celery_worker_factory(queues=..., pool=..., beat=True, env={...}, broker_url=...)`` starts more
or differently configured workers; all of them are stopped when the test ends.

What the fixtures guarantee:

- the worker uses the *test* database (``connection.settings_dict['NAME']``), so the test needs
  ``transaction=True`` (committed rows are what another process can see), and the worker is
  stopped before pytest-django truncates the tables;
- it uses the same broker as the test process (``settings.CELERY_BROKER_URL``, i.e. your own
  ``redis://127.0.0.1:6379/N``), whose Redis database is flushed first so a previous test's
  messages never leak in;
- it writes artifacts under the test's ``settings.ARTIFACT_DIR``, like the test process;
- ``redis_server`` is a private ``redis-server`` on a free port (never the shared one), which a
  test may restart; ``use_broker(url)`` points this process's Celery app at it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.db import connection

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 120.0


def all_queues() -> str:
    """Every queue kind's default queue (scoring,training,imports): what one test worker consumes."""
    from labeling.services.dispatch import QueueKind

    return ",".join(kind.value for kind in QueueKind)


def database_url() -> str:
    """URL of the database this test process is using (pytest-django's test database)."""
    s = connection.settings_dict
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgres://{auth}{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_flush(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def wait_until(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    interval: float = 0.2,
    what: str | Callable[[], str] = "condition",
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test with ``what`` on timeout.

    ``what`` may be a function, called on timeout to describe the state (e.g. the runs' errors).
    The timeout is a safety net against a hang, not a speed assertion.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


class WorkerProcess:
    """One ``celery -A workers.app worker`` subprocess; restartable, killable."""

    def __init__(
        self,
        *,
        log_dir: Path,
        env: dict[str, str],
        queues: str | None = None,
        pool: str = "solo",
        concurrency: int = 1,
        beat: bool = False,
    ) -> None:
        self.name = f"test-{uuid.uuid4().hex[:8]}"
        self.log_dir, self.env, self.queues, self.pool = log_dir, env, queues or all_queues(), pool
        self.concurrency, self.beat = concurrency, beat
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers.app",
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            self.pool,
            "--concurrency",
            str(self.concurrency),
            "--queues",
            self.queues,
            "-n",
            f"{self.name}-{self.starts}@%h",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        if self.beat:
            cmd += ["--beat", "--schedule", str(self.log_dir / f"{self.name}-beat-schedule")]
        return cmd

    def start(self, *, wait: bool = True) -> WorkerProcess:
        assert self.proc is None or self.proc.poll() is not None, "worker already running"
        self.starts += 1
        log = self.log_path.open("wb")
        # A new session: kill() can take down the whole process group (prefork children too).
        self.proc = subprocess.Popen(
            self.command(),
            cwd=REPO_ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                pytest.fail(f"celery worker exited with {self.proc.returncode}:\n{self.logs()[-4000:]}")
            return " ready." in self.logs()

        wait_until(ready, timeout=timeout, what=f"worker {self.name} to be ready")

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the worker and its children: no shutdown, no acks, like a host losing power."""
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not finish in ``timeout`` seconds."""
        if not self.alive():
            return
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stray children of a prefork pool


class RedisServer:
    """A private ``redis-server`` (no persistence) on a free port: a restart loses every message."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

        def pong() -> bool:
            try:
                return bool(redis.Redis.from_url(self.url, socket_timeout=0.5).ping())
            except redis.exceptions.ConnectionError:
                return False

        wait_until(pong, timeout=20, what=f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self, down_for: float = 0.0) -> None:
        """Kill and start again on the same port; queued and unacknowledged messages are gone."""
        self.stop()
        time.sleep(down_for)
        self.start()


@contextlib.contextmanager
def use_broker(url: str) -> Iterator[None]:
    """Point this process's Celery app (what ``dispatch.enqueue`` sends with) at ``url``."""
    from workers.app import app

    def reset() -> None:
        # Forget the cached pools; they are rebuilt from broker_url on next use. kombu keeps its
        # pools per URL, so the other broker's pools stay usable (closing them would break them).
        app._pool = None
        app.amqp._producer_pool = None

    # Celery reads the CELERY_BROKER_URL environment variable before its own setting.
    old, old_env = app.conf.broker_url, os.environ.get("CELERY_BROKER_URL")
    app.conf.broker_url = os.environ["CELERY_BROKER_URL"] = url
    reset()
    try:
        yield
    finally:
        app.conf.broker_url = old
        if old_env is None:
            os.environ.pop("CELERY_BROKER_URL", None)
        else:
            os.environ["CELERY_BROKER_URL"] = old_env
        reset()


def worker_env(*, broker_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "labeling.settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": broker_url,
            "ARTIFACT_DIR": str(settings.ARTIFACT_DIR),
            "UPLOAD_DIR": str(settings.UPLOAD_DIR),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


WorkerFactory = Callable[..., WorkerProcess]


@pytest.fixture
def celery_worker_factory(transactional_db: None, settings: Any, tmp_path: Path) -> Iterator[WorkerFactory]:
    """Start configured workers: ``factory(queues=, pool=, concurrency=, beat=, env=, broker_url=)``."""
    workers: list[WorkerProcess] = []
    flushed: set[str] = set()

    def start(
        *,
        queues: str | None = None,
        pool: str = "solo",
        concurrency: int = 1,
        beat: bool = False,
        env: dict[str, str] | None = None,
        broker_url: str | None = None,
        wait: bool = True,
    ) -> WorkerProcess:
        url = broker_url or str(settings.CELERY_BROKER_URL)
        if not url.startswith("redis://"):
            raise pytest.UsageError(f"worker tests need a Redis broker, CELERY_BROKER_URL is {url!r}")
        if url not in flushed:
            redis_flush(url)
            flushed.add(url)
        worker = WorkerProcess(
            log_dir=tmp_path,
            env=worker_env(broker_url=url, extra=env),
            queues=queues,
            pool=pool,
            concurrency=concurrency,
            beat=beat,
        )
        workers.append(worker)
        return worker.start(wait=wait)

    yield start
    for worker in workers:
        worker.stop()
        # Shown by pytest only when the test fails: what the worker did and why.
        print(f"--- {worker.name}: last lines of {worker.log_path} ---\n{worker.logs()[-6000:]}")


@pytest.fixture
def celery_worker(celery_worker_factory: WorkerFactory) -> WorkerProcess:
    """One solo worker on every queue kind with this test's database, broker and artifact folder."""
    return celery_worker_factory()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
