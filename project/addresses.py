"""Client addresses as the per-address limits count them.

Every per-address limit (open sockets, places on a kiosk board) counts an *address group*: an IPv4
address by itself, an IPv6 address by its /64 (one household or phone network hands out a whole
/64, so counting single IPv6 addresses would let one client be millions of clients). The group is
stored and sent to Redis only as a keyed hash (HMAC-SHA-256 with the secret key, cut to 16 bytes),
never as the raw address: docs/kiosk.md, "Fair shares of a board".
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from django.conf import settings

IPV6_GROUP_PREFIX = 64


def address_group(address: str) -> str:
    """``"2001:db8:1:2:3:4:5:6"`` → ``"2001:db8:1:2::/64"``; IPv4 (and IPv4-mapped IPv6) as is;
    anything that is not an address (a test client's name, an empty peer) as itself, cut short."""
    try:
        parsed = ipaddress.ip_address(address.strip().strip("[]"))
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{parsed}/{IPV6_GROUP_PREFIX}", strict=False))
    return str(parsed)


@lru_cache(maxsize=4096)
def _keyed(group: str, secret: str) -> str:
    return hmac.new(secret.encode(), group.encode(), hashlib.sha256).hexdigest()[:32]


def source_key(address: str) -> str:
    """The address group of ``address`` as a keyed hash: what Redis keys and board owners hold."""
    return _keyed(address_group(address), settings.SECRET_KEY)


def scope_address(scope: Mapping[str, Any]) -> str:
    """The client address of an ASGI scope (after project/proxy.py chose it), or ``""``."""
    client = scope.get("client") or ("", 0)
    return str(client[0] or "")
