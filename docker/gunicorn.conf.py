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
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "INFO").lower()
