"""Per-connection database settings that depend on the kind of process.

A web process (``labeling.wsgi`` / ``labeling.asgi`` call ``web_process_begin``) gives every statement
``WEB_STATEMENT_TIMEOUT_MS``: a slow query (a pathological search, a lock wait) is cancelled and the
request answers 503 with Retry-After instead of holding a worker thread. Workers, migrations and
management commands never call it: their statements run as long as their task's time limit allows.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.backends.signals import connection_created

_timeout_ms = 0


def web_process_begin(timeout_ms: int | None = None) -> None:
    """Give connections opened from now on the web statement timeout (``timeout_ms``: override it)."""
    global _timeout_ms
    _timeout_ms = settings.WEB_STATEMENT_TIMEOUT_MS if timeout_ms is None else timeout_ms


def _apply(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _timeout_ms and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = %s", [int(_timeout_ms)])


def connect_signals() -> None:
    connection_created.connect(_apply, dispatch_uid="labeling.db.statement_timeout")
