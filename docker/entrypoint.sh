#!/bin/sh
# Entry point of every alabel container (web, migrate, workers, beat): the command is the argument list.
# Creates the writable folders the settings point at (a fresh volume or a bind mount may lack them),
# then hands PID 1 to the command itself so SIGTERM reaches gunicorn / celery for a graceful stop.
set -eu

for dir in "${VAR_DIR:-/var/lib/alabel}" "${ARTIFACT_DIR:-/var/lib/alabel/artifacts}" \
           "${UPLOAD_DIR:-/var/lib/alabel/uploads}" "${VAR_DIR:-/var/lib/alabel}/beat"; do
  mkdir -p "$dir" 2>/dev/null || true
  if [ ! -w "$dir" ]; then
    echo "alabel: $dir is not writable by uid $(id -u); fix the volume's owner (chown -R $(id -u) on the host)" >&2
    exit 1
  fi
done

if [ "$#" -eq 0 ]; then
  set -- gunicorn labeling.wsgi:application --config docker/gunicorn.conf.py
fi
exec "$@"
