#!/usr/bin/env bash
# Run docker-compose.yml for real, once: build, up, ingest and label over REST, wait for a promoted
# model, scale worker-cpu to 2 and show both consuming, then `down -v`. Not part of `make test`.
#
#   nice scripts/compose_smoke.sh      (needs a running Docker engine and compose v2 or docker-compose)
#
# For a machine that cannot pull from Docker Hub nor reach download.pytorch.org it builds
#   - alabel-base:bookworm from Debian's packages (debootstrap; python3 3.11 in a venv at /opt/venv on
#     the PATH), used as the Dockerfile's PYTHON_IMAGE and as the base of the stand-in PostgreSQL and
#     Redis images of docker/compose.smoke.yml;
#   - torch from a local wheel (TORCH_WHEEL, or found in pip's find-links), served over HTTP to the
#     build as TORCH_FIND_LINKS.
# Knobs: SMOKE_DIR (work folder, default /tmp/alabel-smoke), SMOKE_PORT (web's host port, 18132),
# SMOKE_BASE_IMAGE (skip debootstrap: any image with python3.11 + pip on the PATH and apt),
# PY (host python with this project installed, for the rt-snippets sample), KEEP_IMAGES=1.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
SMOKE_DIR=${SMOKE_DIR:-/tmp/alabel-smoke}
SMOKE_PORT=${SMOKE_PORT:-18132}
WHEEL_PORT=${WHEEL_PORT:-18133}
BASE_IMAGE=${SMOKE_BASE_IMAGE:-alabel-base:bookworm}
PY=${PY:-$REPO/.venv/bin/python}
[[ -x $PY ]] || PY=/work/main/.venv/bin/python
PROJECT=alabelsmoke

t0=$(date +%s)
say() { printf '[%4ss] %s\n' "$(($(date +%s) - t0))" "$*"; }
fail() { say "FAILED: $*"; exit 1; }

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
else
    fail "neither 'docker compose' (v2) nor docker-compose is installed"
fi
docker info >/dev/null 2>&1 || fail "no Docker engine answers (docker info)"
say "engine: $(docker version --format '{{.Server.Version}}') storage $(docker info --format '{{.Driver}}'); compose: $("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -1)"

# --- the base image from Debian's packages ---------------------------------------------------------
if ! docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    [[ $BASE_IMAGE == alabel-base:bookworm ]] || fail "SMOKE_BASE_IMAGE=$BASE_IMAGE does not exist"
    command -v debootstrap >/dev/null || fail "debootstrap is not installed (apt-get install debootstrap)"
    rootfs=$SMOKE_DIR/rootfs
    say "debootstrap bookworm (minbase + python3, python3-venv, ca-certificates) into $rootfs"
    rm -rf "$rootfs" && mkdir -p "$rootfs"
    nice debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" http://deb.debian.org/debian >"$SMOKE_DIR/debootstrap.log" 2>&1 \
        || fail "debootstrap (see $SMOKE_DIR/debootstrap.log)"
    # Debian's python refuses `pip install` outside a venv (PEP 668): a venv first on the PATH gives the
    # Dockerfile what python:3.11-slim gives it, `python` and `pip` that install system-wide.
    chroot "$rootfs" python3 -m venv /opt/venv
    # A network that intercepts TLS (as this one does) signs with its own CA: the build's pip needs
    # the host's extra CAs too, and pip reads the system bundle only when told (PIP_CERT below).
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null
    fi
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["python3"]' - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
fi
say "base image $BASE_IMAGE: $(docker run --rm "$BASE_IMAGE" python --version 2>&1), $(docker image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}')"

# --- a clean copy of the working tree, with its own .env ---------------------------------------------
src=$SMOKE_DIR/src
rm -rf "$src" && mkdir -p "$src"
git ls-files -co --exclude-standard -z | tar --null --ignore-failed-read -T - -c 2>/dev/null | tar -x -C "$src"
secret=$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')
pgpass=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
metrics=$("$PY" -c 'import secrets; print(secrets.token_hex(16))')
sed -e "s|^SECRET_KEY=.*|SECRET_KEY=$secret|" -e "s|^POSTGRES_PASSWORD=.*|POSTGRES_PASSWORD=$pgpass|" \
    -e "s|^DATABASE_URL=.*|DATABASE_URL=postgres://alabel:$pgpass@postgres:5432/alabel|" \
    -e "s|^WEB_PORT=.*|WEB_PORT=$SMOKE_PORT|" -e "s|^WORKER_CONCURRENCY=.*|WORKER_CONCURRENCY=1|" \
    "$src/.env.example" >"$src/.env"
grep -q '^METRICS_TOKEN=' "$src/.env" && sed -i "s|^METRICS_TOKEN=.*|METRICS_TOKEN=$metrics|" "$src/.env"
cat >>"$src/.env" <<EOF
SMOKE_BASE_IMAGE=$BASE_IMAGE
SMOKE_TORCH_FIND_LINKS=http://127.0.0.1:$WHEEL_PORT/
EOF
say "staged the working tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ', with uncommitted changes')) in $src"

# --- torch from a local wheel --------------------------------------------------------------------------
wheels=$SMOKE_DIR/wheels
rm -rf "$wheels" && mkdir -p "$wheels"
wheel=${TORCH_WHEEL:-}
if [[ -z $wheel ]]; then
    for dir in $(pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'/\1/p") /opt/wheels; do
        wheel=$(ls "$dir"/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -1) && [[ -n $wheel ]] && break
    done
fi
if [[ -z $wheel ]]; then
    say "no local torch wheel: pip download torch==2.13.0+cpu (cp311)"
    "$PY" -m pip download "torch==2.13.0+cpu" --no-deps --python-version 3.11 --only-binary=:all: -d "$wheels" >/dev/null \
        || fail "no torch 2.13.0+cpu wheel (set TORCH_WHEEL=/path/to/torch-2.13.0+cpu-cp311-...whl)"
else
    ln -s "$wheel" "$wheels/"
fi
"$PY" -m http.server "$WHEEL_PORT" --bind 127.0.0.1 --directory "$wheels" >"$SMOKE_DIR/wheels.log" 2>&1 &
wheel_server=$!
say "serving $(ls "$wheels") on http://127.0.0.1:$WHEEL_PORT/ for the build"

compose() { (cd "$src" && "${COMPOSE[@]}" -p "$PROJECT" -f docker-compose.yml -f docker/compose.smoke.yml "$@"); }
cleanup() {
    local rc=$?
    say "teardown: down -v"
    compose down -v --remove-orphans >"$SMOKE_DIR/down.log" 2>&1 && say "down -v: ok" || say "down -v: failed (see $SMOKE_DIR/down.log)"
    kill "$wheel_server" 2>/dev/null || true
    if [[ -z ${KEEP_IMAGES:-} ]]; then
        docker image rm alabel:cpu alabel-smoke-postgres:15 alabel-smoke-redis:7.0 >/dev/null 2>&1 || true
        docker image prune -f >/dev/null 2>&1 || true
    fi
    say "exit $rc"
}
trap cleanup EXIT

# --- build and up --------------------------------------------------------------------------------------
say "build (app image FROM $BASE_IMAGE, torch from the local wheel; postgres-15 and redis-server from Debian)"
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0  # the classic builder: BuildKit's # syntax= line needs Docker Hub
compose build >"$SMOKE_DIR/build.log" 2>&1 || { tail -40 "$SMOKE_DIR/build.log"; fail "build (see $SMOKE_DIR/build.log)"; }
say "built: $(docker image inspect --format '{{.Size}}' alabel:cpu | awk '{printf "alabel:cpu %.2f GB", $1/1e9}')"
compose up -d >"$SMOKE_DIR/up.log" 2>&1 || { tail -40 "$SMOKE_DIR/up.log"; compose ps; compose logs --tail 40; fail "up -d"; }
say "up -d: $(compose ps --services --filter status=running 2>/dev/null | sort | tr '\n' ' ')"

health() { docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$(compose ps -q "$1")"; }
for i in $(seq 1 120); do
    [[ $(health web) == healthy ]] && break
    [[ $i == 120 ]] && { compose ps; compose logs --tail 60 migrate web; fail "web not healthy in 10 min"; }
    sleep 5
done
say "healthy: postgres $(health postgres), redis $(health redis), web $(health web); migrate exited $(docker inspect --format '{{.State.ExitCode}}' "$(compose ps -q migrate)")"
say "host GET /healthz: $(curl -fsS "http://127.0.0.1:$SMOKE_PORT/healthz"), /readyz: $(curl -fsS "http://127.0.0.1:$SMOKE_PORT/readyz")"
compose ps

# --- an admin and its API key (the documented way: manage.py in the web container) ------------------
compose exec -T -e DJANGO_SUPERUSER_PASSWORD="$pgpass" web python manage.py createsuperuser --noinput \
    --username smoke --email smoke@example.com >/dev/null
token=$(compose exec -T web python manage.py token_create smoke --client compose-smoke | sed -n 's/^Generated token \([^ ]*\) .*/\1/p')
[[ -n $token ]] || fail "token_create printed no key"
say "superuser smoke and its API key made with manage.py in the web container"

# --- REST: ingest, label, retrain, promoted model -------------------------------------------------------
api_out=$SMOKE_DIR/api.log
PYTHONPATH=$REPO "$PY" scripts/compose_smoke_api.py "http://127.0.0.1:$SMOKE_PORT" "$token" label-and-train \
    | tee "$api_out" || { compose logs --tail 80 worker-cpu; fail "label and train over REST"; }
project_id=$(sed -n 's/^PROJECT_ID=//p' "$api_out")

# --- scale worker-cpu to 2 and show both consuming ------------------------------------------------------
compose up -d --no-recreate --scale worker-cpu=2 worker-cpu >>"$SMOKE_DIR/up.log" 2>&1 || fail "scale worker-cpu=2"
mapfile -t cpu_workers < <(compose ps -q worker-cpu)
say "worker-cpu scaled to ${#cpu_workers[@]}: $(for c in "${cpu_workers[@]}"; do docker inspect --format '{{.Name}}' "$c"; done | tr '\n' ' ')"
for i in $(seq 1 60); do
    pong=$(compose exec -T web celery -A workers.app inspect ping --timeout 5 2>/dev/null | grep -c '^->  cpu@' || true)
    [[ $pong -ge 2 ]] && break
    sleep 5
done
say "celery inspect ping: $pong cpu@ workers answer"
since=$(date -u +%Y-%m-%dT%H:%M:%S)
PYTHONPATH=$REPO "$PY" scripts/compose_smoke_api.py "http://127.0.0.1:$SMOKE_PORT" "$token" more-work "$project_id" \
    || fail "more work over REST"
consuming=0
for c in "${cpu_workers[@]}"; do
    name=$(docker inspect --format '{{.Name}}' "$c")
    n=$(docker logs --since "$since" "$c" 2>&1 | grep -c 'Task .* received' || true)
    tasks=$(docker logs --since "$since" "$c" 2>&1 | sed -n 's/.*Task \([a-z_.]*\)\[.*\] received.*/\1/p' | sort | uniq -c | awk '{printf "%s x%s, ", $2, $1}')
    say "$name received $n tasks since the scale-out: ${tasks%, }"
    [[ $n -gt 0 ]] && consuming=$((consuming + 1))
done
[[ $consuming -ge 2 ]] || fail "only $consuming of ${#cpu_workers[@]} worker-cpu containers consumed"
say "both worker-cpu containers consumed tasks"
compose ps
errors=$(compose logs --no-color 2>&1 | grep -E 'ERROR|CRITICAL|Traceback' || true)
if [[ -n $errors ]]; then
    say "errors in the containers' logs ($(wc -l <<<"$errors") lines):"
    head -20 <<<"$errors"
else
    say "no ERROR, CRITICAL or Traceback line in any container's log"
fi
say "SMOKE OK"
