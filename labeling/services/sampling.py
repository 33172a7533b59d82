"""Seeded, deterministic draws: the same key always lands on the same side, on any machine.

The holdout draw, the overlap share and the review audit share are each a draw of this kind; each
salts its key differently (``"{seed}:{content_hash}"``, ``"{seed}:overlap:..."``, ``"{seed}:audit:..."``)
so the three are independent of one another.
"""

from __future__ import annotations

import hashlib


def seeded_draw(key: str, share: float) -> bool:
    """True for a ``share`` of all keys: the first 8 bytes of sha256(key) as a fraction of 2**64."""
    if share <= 0:
        return False
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share
