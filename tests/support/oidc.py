"""Start the real OpenID Connect provider of tests/support/oidc_provider in a process of its own."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class OidcProvider:
    base_url: str
    claims_path: Path
    client_id: str
    client_secret: str

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/o"

    def set_claims(self, username: str, claims: dict[str, Any]) -> None:
        data = json.loads(self.claims_path.read_text())
        data[username] = claims
        self.claims_path.write_text(json.dumps(data))

    def discovery(self) -> dict[str, Any]:
        answer = requests.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def rp_settings(self) -> dict[str, Any]:
        """alabel's OIDC_* settings for this provider, read from its discovery document as an admin would."""
        doc = self.discovery()
        return {
            "OIDC_ENABLED": True,
            "OIDC_RP_CLIENT_ID": self.client_id,
            "OIDC_RP_CLIENT_SECRET": self.client_secret,
            "OIDC_OP_ISSUER": doc["issuer"],
            "OIDC_OP_AUTHORIZATION_ENDPOINT": doc["authorization_endpoint"],
            "OIDC_OP_TOKEN_ENDPOINT": doc["token_endpoint"],
            "OIDC_OP_USER_ENDPOINT": doc["userinfo_endpoint"],
            "OIDC_OP_JWKS_ENDPOINT": doc["jwks_uri"],
            "OIDC_PROVIDER_NAME": "Test IdP",
        }


@contextmanager
def oidc_provider(*, workdir: Path, redirect_uri: str, users: dict[str, str]) -> Iterator[OidcProvider]:
    """A running provider whose one client may redirect to ``redirect_uri``; stopped on exit."""
    claims_path = workdir / "claims.json"
    claims_path.write_text("{}")
    client_id, client_secret = "alabel-test", "test-client-secret-0123456789"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OIDC_PROVIDER_DB": str(workdir / "provider.sqlite3"),
        "OIDC_PROVIDER_CLAIMS": str(claims_path),
        "OIDC_PROVIDER_USERS": json.dumps(users),
        "OIDC_PROVIDER_CLIENT": json.dumps(
            {"client_id": client_id, "client_secret": client_secret, "redirect_uri": redirect_uri}
        ),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    log = (workdir / "provider.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.oidc_provider.serve"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or []], daemon=True).start()
    try:
        try:
            first = lines.get(timeout=120)
        except queue.Empty:
            first = ""
        match = re.fullmatch(r"listening (\d+)\s*", first)
        if match is None:
            raise RuntimeError(f"the OIDC provider did not start: {(workdir / 'provider.log').read_text()[-3000:]}")
        yield OidcProvider(f"http://127.0.0.1:{match[1]}", claims_path, client_id, client_secret)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
