"""Container healthcheck for web: exit 0 when the app answers HEALTHCHECK_PATH with 2xx/3xx.

Standard library only (the slim image has no curl). The Host header is the first ALLOWED_HOSTS
entry, so the check passes exactly when the app would serve real traffic for that host.
"""

from __future__ import annotations

import http.client
import os
import sys


def probe_host(allowed_hosts: str) -> str:
    """A Host header Django accepts: the first concrete ALLOWED_HOSTS entry ("localhost" for "*")."""
    for entry in (h.strip() for h in allowed_hosts.split(",")):
        if entry and entry != "*":
            return entry.lstrip(".")
    return "localhost"


def main() -> int:
    port = int(os.environ.get("PORT", "8000"))
    path = os.environ.get("HEALTHCHECK_PATH", "/healthz")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": probe_host(os.environ.get("ALLOWED_HOSTS", "localhost"))})
        status = conn.getresponse().status
    except OSError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    if 200 <= status < 400:
        return 0
    print(f"unhealthy: GET {path} answered {status}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
