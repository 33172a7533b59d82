"""API tokens: created (and so rotated) per user and client, revoked, listed; only digests are stored.

Creating and revoking are recorded in the audit log (site-wide: a token belongs to no project), with
the client's name and the expiry, never the key or its digest.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from knox.crypto import hash_token
from knox.settings import CONSTANTS

from labeling.models import ApiToken, AuditAction
from labeling.services.audit import audit_record

DEFAULT_CLIENT = "default"


def token_create(
    *, user: Any, client: str = DEFAULT_CLIENT, ttl_days: int | None = None, by: Any = None
) -> tuple[ApiToken, str]:
    """A new key for ``user``'s ``client``; an earlier key of that client stops working (rotation).

    Returns the row and the key: the key is shown once and never stored. ``ttl_days`` 0 = no expiry.
    ``by``: who asked (None: a management command).
    """
    days = settings.TOKEN_TTL_DAYS if ttl_days is None else ttl_days
    with transaction.atomic():
        rotated = ApiToken.objects.filter(user=user, client=client).delete()[0]
        row, key = ApiToken.objects.create(user=user, client=client, expiry=timedelta(days=days) if days else None)
        audit_record(
            actor=by, action=AuditAction.TOKEN_CREATED, target=user,
            data={"client": client, "expires": row.expiry, "rotated": bool(rotated)},
        )
        return row, key


def token_revoke(*, user: Any, client: str | None = None, by: Any = None) -> int:
    """Delete ``user``'s key for ``client`` (every key when None); how many were deleted."""
    with transaction.atomic():
        tokens = ApiToken.objects.filter(user=user)
        if client is not None:
            tokens = tokens.filter(client=client)
        deleted: int = tokens.delete()[0]
        if deleted:
            audit_record(
                actor=by, action=AuditAction.TOKEN_REVOKED, target=user,
                data={"client": client, "all_clients": client is None, "count": deleted},
            )
    return deleted


def token_digest(key: str) -> str:
    """What ApiToken stores for ``key`` (its primary key)."""
    return hash_token(key)


def legacy_token_row(key: str) -> dict[str, Any]:
    """The ApiToken fields for a pre-hashing plain key (the data migration hashes them with this)."""
    return {"digest": hash_token(key), "token_key": key[: CONSTANTS.TOKEN_KEY_LENGTH]}
