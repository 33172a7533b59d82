"""A per-install secret key for installs that set none (the demo, tests): random, kept in a 0600 file.

Never a constant in the source: a key everyone can read signs sessions, password-reset links and
CSRF tokens for anyone.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def install_secret_key(path: Path) -> str:
    """The key stored at ``path``, created (0600, atomically, first writer wins) when it is missing."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process of this install wrote it first
        return path.read_text().strip()
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_urlsafe(50))
    return path.read_text().strip()
