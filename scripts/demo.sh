#!/usr/bin/env bash
# `make demo`: set up (idempotently) and run the whole service on this machine.
#
# Embedded defaults: SQLite under VAR_DIR (./var) and kombu's filesystem broker, so nothing but
# Python is needed. Set DATABASE_URL / CELERY_BROKER_URL to use PostgreSQL / Redis instead.
# Ctrl+C (or SIGTERM) stops the web server, the worker and beat, and waits for them to exit.
#
#   DATASET=rt-snippets|trec|path/to/file.{csv,jsonl,parquet}  TEXT_COL=text LABEL_COL=label
#   LABELS=a,b (a file without a label column)  PORT=8000  HOST=127.0.0.1
#   SETUP_ONLY=1 (set up and exit)  DEMO_LIMIT=N (import a seeded sample of N rows)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
DATASET=${DATASET:-rt-snippets}
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export DJANGO_SETTINGS_MODULE=labeling.settings
VAR_DIR=${VAR_DIR:-$PWD/var}
export VAR_DIR
mkdir -p "$VAR_DIR"

pids=()
stopping=0
stop_all() {
    # Children of a non-interactive shell ignore SIGINT, so each gets SIGTERM (a warm shutdown for
    # Celery: the running task finishes or is re-delivered later, every task being idempotent).
    [[ $stopping == 1 ]] && return
    stopping=1
    ((${#pids[@]})) || return 0
    echo
    echo "demo: stopping (web, worker, beat) ..."
    kill -TERM "${pids[@]}" 2>/dev/null || true
    for _ in $(seq 1 50); do
        alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.2
    done
    for pid in "${pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then
            pkill -KILL -P "$pid" 2>/dev/null || true  # a worker's pool children, by parent id
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    wait 2>/dev/null || true
    echo "demo: stopped"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

echo "demo: database and accounts ..."
"$PY" manage.py migrate --noinput -v 0
setup_args=(--dataset "$DATASET")
[[ -n ${TEXT_COL:-} ]] && setup_args+=(--text-col "$TEXT_COL")
[[ -n ${LABEL_COL:-} ]] && setup_args+=(--label-col "$LABEL_COL")
[[ -n ${LABELS:-} ]] && setup_args+=(--labels "$LABELS")
[[ -n ${DEMO_LIMIT:-} ]] && setup_args+=(--limit "$DEMO_LIMIT")
"$PY" manage.py demo "${setup_args[@]}"
[[ -n ${SETUP_ONLY:-} ]] && exit 0

"$PY" manage.py collectstatic --noinput -v 0 >/dev/null 2>&1 || true
"$PY" manage.py runserver --noreload "$HOST:$PORT" &
pids+=($!)
# One process for every queue: SQLite takes one writer at a time, and on a laptop the encoder
# already uses every core (an upload through the UI then waits for the scoring in hand, and back).
"$PY" -m celery -A workers.app worker --queues scoring,training,imports --pool solo --loglevel INFO \
    --hostname "demo@%h" &
pids+=($!)
# Webhook deliveries in a process of their own: a receiver that is slow or down never waits in
# line with scoring or training (each attempt is short and bounded by WEBHOOK_TIMEOUT_S).
"$PY" -m celery -A workers.app worker --queues webhooks --pool solo --loglevel INFO \
    --hostname "demo-webhooks@%h" &
pids+=($!)
"$PY" -m celery -A workers.app beat --loglevel INFO --schedule "$VAR_DIR/celerybeat-schedule" &
pids+=($!)

cat <<MSG

  alabel demo is starting: open http://$HOST:$PORT/  (log in with an account printed above)
  Press Ctrl+C to stop.

MSG
# Stop everything as soon as any one of them exits (a crashed worker must not leave a silent demo).
# A one-second poll rather than `wait -n`: bash runs the Ctrl+C trap at the latest when the current
# sleep ends, while a SIGINT that lands as `wait -n` starts can leave it waiting indefinitely.
all_alive() {
    local pid
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null || return 1; done
}
while all_alive; do
    sleep 1 &
    wait $! || true
done
echo "demo: a process exited; stopping the others"
