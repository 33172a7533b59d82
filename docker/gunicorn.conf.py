"""Gunicorn settings for the web container; every knob is an environment variable (see .env.example).

Threads (gthread) rather than more processes: requests are short and I/O-bound, and a gthread
worker's ``timeout`` only fires when the process itself hangs, so a slow multi-GB upload that
streams to UPLOAD_DIR is not killed mid-way.
"""

from __future__ import annotations

import os

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
# Recycle workers now and then so a slow leak in any library cannot grow without bound.
max_requests = 2000
max_requests_jitter = 200
# Docker's /tmp may be a slow overlay; the heartbeat file belongs in memory.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# Only the load balancer in front may set X-Forwarded-*; "*" is right inside a private network.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
# No control socket (gunicorn 25.1+): nobody runs gunicornc inside the container, and its default
# place, $HOME/.gunicorn = /app/.gunicorn, is not writable by the app user; the first real compose run
# logged "Control server error: [Errno 13] Permission denied: '/app/.gunicorn'" at every start.
control_socket_disable = True
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()


# --- Prometheus (labeling/api/metrics.py) -------------------------------------------------------
# With PROMETHEUS_MULTIPROC_DIR set, every worker process writes its request metrics to files there
# and /metrics, whichever process answers, reads them all. The directory belongs to this server alone.


def on_starting(server: object) -> None:
    """Start from an empty directory: a previous run's files would be counted again (before any fork)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.remove(os.path.join(directory, name))


def child_exit(server: object, worker: object) -> None:
    """A recycled worker's counters stay summed; its live gauges go (prometheus_client's rule)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined]
