"""API tokens: created (and so rotated) per user and client, revoked, listed; only digests are stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from knox.crypto import hash_token
from knox.settings import CONSTANTS

from labeling.models import ApiToken

DEFAULT_CLIENT = "default"


def token_create(*, user: Any, client: str = DEFAULT_CLIENT, ttl_days: int | None = None) -> tuple[ApiToken, str]:
    """A new key for ``user``'s ``client``; an earlier key of that client stops working (rotation).

    Returns the row and the key: the key is shown once and never stored. ``ttl_days`` 0 = no expiry.
    """
    days = settings.TOKEN_TTL_DAYS if ttl_days is None else ttl_days
    with transaction.atomic():
        ApiToken.objects.filter(user=user, client=client).delete()
        return ApiToken.objects.create(  # type: ignore[return-value]
            user=user, client=client, expiry=timedelta(days=days) if days else None
        )


def token_revoke(*, user: Any, client: str | None = None) -> int:
    """Delete ``user``'s key for ``client`` (every key when None); how many were deleted."""
    tokens = ApiToken.objects.filter(user=user)
    if client is not None:
        tokens = tokens.filter(client=client)
    return tokens.delete()[0]


def token_digest(key: str) -> str:
    """What ApiToken stores for ``key`` (its primary key)."""
    return hash_token(key)


def legacy_token_row(key: str) -> dict[str, Any]:
    """The ApiToken fields for a pre-hashing plain key (the data migration hashes them with this)."""
    return {"digest": hash_token(key), "token_key": key[: CONSTANTS.TOKEN_KEY_LENGTH]}
