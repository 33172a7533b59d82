"""A real HTTP receiver for webhook deliveries: ``http.server`` in a thread, on 127.0.0.1.

Used by tests/workers/test_webhooks.py and bench/webhooks.py::

    receiver = Receiver().start()            # port 0: a free port
    ... receiver.url ... receiver.requests   # every POST that reached it, in arrival order
    receiver.stop(); receiver.start()         # down, and back on the same port
    receiver.status = 503                     # answer this instead of 200
    receiver.hold()                           # keep requests waiting until receiver.release()
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    arrived: float  # time.time() when the body had been read
    path: str
    headers: dict[str, str]
    body: bytes


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    receiver: Receiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        receiver = self.server.receiver
        receiver._arrive(Received(time.time(), self.path, {k: v for k, v in self.headers.items()}, body))
        receiver._released.wait()
        self.send_response(receiver.status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok" if receiver.status < 300 else b"receiver says no")

    def log_message(self, format: str, *args: Any) -> None:
        return None


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.status = 200
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._released.set()
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.receiver = self
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Close the port: connections are refused until ``start`` again."""
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def hold(self) -> None:
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def _arrive(self, received: Received) -> None:
        with self._lock:
            self.requests.append(received)

    def received(self, event: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if event is None or r.headers.get("X-Alabel-Event") == event]

    def event_ids(self, event: str | None = None) -> list[str]:
        return [r.headers["X-Alabel-Delivery"] for r in self.received(event)]
