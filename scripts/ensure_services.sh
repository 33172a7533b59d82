#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on localhost; start them where installed but stopped.
# Where one is not installed at all, stop with one line saying what to install.
set -uo pipefail
PGHOST=${PGHOST:-127.0.0.1}; PGPORT=${PGPORT:-5432}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}; REDIS_PORT=${REDIS_PORT:-6379}

pg_up() { pg_isready -q -h "$PGHOST" -p "$PGPORT" 2>/dev/null; }
redis_up() { [ "$(redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = "PONG" ]; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else return 1; fi; }

if ! command -v pg_isready >/dev/null; then
  echo "PostgreSQL is not installed: install it (Debian/Ubuntu: apt-get install postgresql) and re-run." >&2; exit 1
fi
if ! pg_up; then
  echo "PostgreSQL is not answering on $PGHOST:$PGPORT; starting it..."
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    for v in $(ls /etc/postgresql); do as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true; done
  else
    as_root service postgresql start || true
  fi
  for _ in $(seq 1 30); do pg_up && break; sleep 1; done
  pg_up || { echo "PostgreSQL would not start: start it by hand (pg_ctlcluster <version> main start) and re-run." >&2; exit 1; }
fi

if ! command -v redis-server >/dev/null; then
  echo "Redis is not installed: install it (Debian/Ubuntu: apt-get install redis-server) and re-run." >&2; exit 1
fi
if ! redis_up; then
  echo "Redis is not answering on $REDIS_HOST:$REDIS_PORT; starting it..."
  mkdir -p /tmp/alabel-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir /tmp/alabel-redis --logfile /tmp/alabel-redis/redis.log || true
  for _ in $(seq 1 20); do redis_up && break; sleep 0.5; done
  redis_up || { echo "Redis would not start: see /tmp/alabel-redis/redis.log" >&2; exit 1; }
fi
echo "PostgreSQL and Redis are answering."
