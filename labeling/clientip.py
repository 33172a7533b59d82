"""The client's address: the TCP peer, or what a trusted proxy says it forwarded for.

Rate limits and login lockouts count per address, so the address must be one a client cannot
choose: ``X-Forwarded-For`` is read only when the peer is one of ``settings.TRUSTED_PROXIES``, and
then from the right, skipping further trusted proxies (a client can prepend anything it likes).
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Any

from django.conf import settings

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in trusted if entry.strip())


def _trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


def client_ip(request: Any) -> str:
    """The address rate limits and lockouts count on (a Django or DRF request)."""
    meta = request.META
    peer = meta.get("REMOTE_ADDR") or ""
    networks = _networks(tuple(settings.TRUSTED_PROXIES))
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed hop: believe nothing past it
        if not _trusted(hop, networks):
            return hop
    return hops[0] if hops else peer
