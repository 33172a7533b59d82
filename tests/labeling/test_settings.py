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


SETUP = "import os; os.environ['DJANGO_SETTINGS_MODULE']='labeling.settings'; import django; django.setup();"


def test_secret_key_is_required_where_production_says_so() -> None:
    out = _run_python(SETUP, DEBUG="0", REQUIRE_SECRET_KEY="1")
    assert out.returncode != 0
    assert "SECRET_KEY must be set" in out.stderr
    assert _run_python(SETUP, DEBUG="0", REQUIRE_SECRET_KEY="1", SECRET_KEY="x" * 50).returncode == 0


def test_debug_is_off_and_the_key_is_per_install_unless_set(tmp_path: Path) -> None:
    code = SETUP + "from django.conf import settings as s; print(s.DEBUG, s.SECRET_KEY)"
    first = _run_python(code, VAR_DIR=str(tmp_path / "a"))
    assert first.returncode == 0, first.stderr
    debug, key = first.stdout.split()
    assert debug == "False"
    assert len(key) >= 50 and "insecure" not in key
    key_file = tmp_path / "a" / "secret_key"
    assert key_file.read_text().strip() == key and key_file.stat().st_mode & 0o077 == 0
    assert _run_python(code, VAR_DIR=str(tmp_path / "a")).stdout.split()[1] == key  # kept across starts
    assert _run_python(code, VAR_DIR=str(tmp_path / "b")).stdout.split()[1] != key  # each install its own


def test_the_proxy_https_header_is_believed_only_behind_a_tls_proxy(tmp_path: Path) -> None:
    code = SETUP + (
        "from django.conf import settings as s;"
        "print(getattr(s, 'SECURE_PROXY_SSL_HEADER', None), s.SESSION_COOKIE_SECURE, s.SECURE_HSTS_SECONDS)"
    )
    plain = _run_python(code, VAR_DIR=str(tmp_path))
    assert plain.stdout.split() == ["None", "False", "0"], plain.stderr
    proxied = _run_python(code, VAR_DIR=str(tmp_path), TLS_PROXY="1")
    assert proxied.stdout.split()[-2:] == ["True", "31536000"]
    assert "HTTP_X_FORWARDED_PROTO" in proxied.stdout


PRODUCTION = {
    "DEBUG": "0", "REQUIRE_SECRET_KEY": "1", "SECRET_KEY": "k" * 20 + "Q9-z_" * 10, "TLS_PROXY": "1",
    "ALLOWED_HOSTS": "label.example.com", "CSRF_TRUSTED_ORIGINS": "https://label.example.com",
}


def test_check_deploy_is_clean_for_production_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "SECRET_KEY", "DJANGO_ALLOW_ASYNC_UNSAFE"}}
    env.update(PRODUCTION, VAR_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


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


def test_single_sign_on_is_off_unless_configured_and_then_needs_every_endpoint(tmp_path: Path) -> None:
    show = SETUP + "from django.conf import settings as s; print(s.OIDC_ENABLED)"
    off = _run_python(show, VAR_DIR=str(tmp_path))
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == ["False"]
    half = _run_python(show, VAR_DIR=str(tmp_path), OIDC_RP_CLIENT_ID="alabel",
                       OIDC_OP_ISSUER="https://idp.example.org")
    assert half.returncode != 0
    assert "OIDC_RP_CLIENT_SECRET, OIDC_OP_AUTHORIZATION_ENDPOINT" in half.stderr
    full = {name: "https://idp.example.org/x" for name in (
        "OIDC_OP_ISSUER", "OIDC_OP_AUTHORIZATION_ENDPOINT", "OIDC_OP_TOKEN_ENDPOINT", "OIDC_OP_USER_ENDPOINT",
        "OIDC_OP_JWKS_ENDPOINT")}
    on = _run_python(show, VAR_DIR=str(tmp_path), OIDC_RP_CLIENT_ID="alabel", OIDC_RP_CLIENT_SECRET="s", **full)
    assert on.returncode == 0, on.stderr
    assert on.stdout.split() == ["True"]
