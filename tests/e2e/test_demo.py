"""`make demo`'s script on the embedded stack: SQLite + the filesystem broker, in a temporary VAR_DIR.

The setup step runs for real on a seeded sample of rt-snippets; then the whole demo (web server,
Celery worker, beat) is started on a free port, answers the login page, runs beat's tasks on the
worker through the filesystem broker, and stops with every child process on Ctrl+C (SIGINT).
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e]


def demo_env(var_dir: Path, **extra: str) -> dict[str, str]:
    dropped = ("DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update({"VAR_DIR": str(var_dir), "DEMO_LIMIT": "200", "PY": str(ROOT / ".venv" / "bin" / "python")})
    env.update(extra)
    return env


def run_setup(var_dir: Path) -> str:
    result = subprocess.run(["bash", "scripts/demo.sh"], cwd=ROOT, env=demo_env(var_dir, SETUP_ONLY="1"),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def snapshot(db: Path) -> dict[str, object]:
    with sqlite3.connect(db) as conn:
        users = dict(conn.execute("SELECT username, is_staff FROM auth_user").fetchall())
        annotators = {r[0] for r in conn.execute(
            "SELECT u.username FROM auth_user u JOIN labeling_projectmembership m ON m.user_id = u.id "
            "WHERE m.role = 'annotator'")}
        projects = conn.execute("SELECT id, name FROM labeling_project").fetchall()
        docs = conn.execute(
            "SELECT COUNT(*), COUNT(gold_label), COUNT(DISTINCT gold_label) FROM labeling_document"
        ).fetchone()
        annotations = conn.execute("SELECT COUNT(*) FROM labeling_annotation").fetchone()[0]
    return {"users": users, "annotators": annotators, "projects": projects, "docs": docs,
            "annotations": annotations}


def test_demo_setup_creates_users_project_documents_and_a_second_run_changes_nothing(tmp_path: Path) -> None:
    first_out = run_setup(tmp_path)
    first = snapshot(tmp_path / "labeling.sqlite3")

    assert first["users"] == {"admin": 1, "annotator1": 0, "annotator2": 0}
    assert first["annotators"] == {"annotator1", "annotator2"}
    assert [name for _, name in first["projects"]] == ["Demo: rt-snippets"]
    assert first["docs"] == (200, 200, 2)  # gold labels kept on the documents (fresh / rotten) ...
    assert first["annotations"] == 0  # ... never as annotations
    assert "password alabel-demo" in first_out and "imported 200 documents" in first_out

    second_out = run_setup(tmp_path)
    assert snapshot(tmp_path / "labeling.sqlite3") == first
    assert "200 documents already imported (skipped)" in second_out


def test_the_demo_database_takes_labels_tokens_label_set_changes_and_pruning(tmp_path: Path) -> None:
    """SQLite runs the demo: every write path with SQL of its own must run there too (a token's raw row,
    the label set's KEY SHARE read, a multi-label rename's array update and the prune's SKIP LOCKED did
    not, and PostgreSQL-only tests could not see it)."""
    run_setup(tmp_path)
    env = demo_env(tmp_path, DJANGO_SETTINGS_MODULE="labeling.settings", HF_HUB_OFFLINE="1")
    result = subprocess.run([env["PY"], "tests/e2e/demo_sqlite_paths.py"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def free_port() -> int:
    for port in range(8401, 8421):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port in 8401-8420")


def session_processes(sid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_demo_serves_the_login_page_runs_beat_tasks_and_stops_every_process_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    log = (tmp_path / "demo.log").open("w")
    proc = subprocess.Popen(
        ["bash", "scripts/demo.sh"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=demo_env(tmp_path, PORT=str(port), CELERY_RECONCILE_SECONDS="2"),
        # A terminal's Ctrl+C: where the suite itself runs as a background job (SIGINT ignored, e.g.
        # `make test &`), the script would inherit the ignore, and bash cannot trap a signal ignored at
        # its start, so it would never stop.
        preexec_fn=_default_sigint,
    )
    try:
        status = None
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and status is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5) as resp:
                    status, body = resp.status, resp.read().decode()
            except OSError:
                time.sleep(1)
        assert status == 200, (tmp_path / "demo.log").read_text()[-3000:]
        assert "password" in body.lower()
        # Beat sends the reconcile task every 2 s through the filesystem broker; the worker runs it
        # against the shared SQLite database.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "alabel.scoring.reconcile" not in _succeeded(tmp_path):
            time.sleep(1)
        assert "alabel.scoring.reconcile" in _succeeded(tmp_path), (tmp_path / "demo.log").read_text()[-3000:]
        assert len(session_processes(proc.pid)) >= 4  # the script, web, worker, beat

        proc.send_signal(signal.SIGINT)  # Ctrl+C reaches the script; its trap stops the rest
        assert proc.wait(timeout=90) == 130
        deadline = time.monotonic() + 10
        while session_processes(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert session_processes(proc.pid) == []
        assert "demo: stopped" in (tmp_path / "demo.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def _succeeded(var_dir: Path) -> str:
    text = (var_dir / "demo.log").read_text()
    return "\n".join(line for line in text.splitlines() if "succeeded" in line)
