"""Settings come from the environment, with embedded defaults that run on a bare machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG",
                                                              "SECRET_KEY"}}
    base.update(env)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base, capture_output=True, text=True,
                          timeout=120)


def test_embedded_defaults_need_no_server(tmp_path: Path) -> None:
    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE']='labeling.settings'; django.setup();"
            "from django.conf import settings as s;"
            "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)")
    out = _run_python(code, VAR_DIR=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["django.db.backends.sqlite3", "filesystem://"]


def test_secret_key_is_required_when_debug_is_off() -> None:
    code = "import os; os.environ['DJANGO_SETTINGS_MODULE']='labeling.settings'; import django; django.setup()"
    out = _run_python(code, DEBUG="0")
    assert out.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in out.stderr
    assert _run_python(code, DEBUG="0", SECRET_KEY="x" * 50).returncode == 0


def test_test_run_fails_when_postgresql_is_down() -> None:
    """Pointing at a PostgreSQL that does not answer fails the run; it never falls back to SQLite."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/labeling/test_models.py::test_tests_run_on_postgresql"],
        cwd=ROOT, capture_output=True, text=True, timeout=180,
        env={**os.environ, "DATABASE_URL": "postgres://postgres@127.0.0.1:1/alabel_down"},
    )
    assert out.returncode != 0
    assert "connection" in (out.stdout + out.stderr).lower()


def test_rate_limit_counters_can_be_shared_through_redis(tmp_path: Path) -> None:
    """Several web replicas count one client's requests together when CACHE_URL names one Redis."""
    code = ("import django, os; os.environ['DJANGO_SETTINGS_MODULE']='labeling.settings'; django.setup();"
            "from django.core.cache import cache; from django.conf import settings as s;"
            "cache.set('alabel-settings-test', 7, 30);"
            "print(s.CACHES['default']['BACKEND'], cache.get('alabel-settings-test'))")
    shared = _run_python(code, VAR_DIR=str(tmp_path), CACHE_URL="redis://127.0.0.1:6379/1")
    assert shared.returncode == 0, shared.stderr
    assert shared.stdout.split() == ["django.core.cache.backends.redis.RedisCache", "7"]
    reader = code.replace("cache.set('alabel-settings-test', 7, 30);", "")  # another process, same Redis
    assert _run_python(reader, VAR_DIR=str(tmp_path), CACHE_URL="redis://127.0.0.1:6379/1").stdout.split()[1] == "7"
    alone = _run_python(reader, VAR_DIR=str(tmp_path), CACHE_URL="")
    assert alone.stdout.split() == ["django.core.cache.backends.locmem.LocMemCache", "None"]
