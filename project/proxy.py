"""Who the client is: the peer address, or what a trusted reverse proxy says it is.

README: "Behind a proxy". ``TrustedProxyMiddleware`` wraps the whole ASGI application (HTTP and
WebSocket). Only when the peer (``scope["client"]``) is in ``TRUSTED_PROXIES`` does it replace the
client address with the right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy,
and the scheme with ``X-Forwarded-Proto``; from anyone else those headers are ignored. Daphne runs
without ``--proxy-headers``, so this is the only place that reads them; throttles, logs and
metrics all see the address chosen here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from django.conf import settings

from .asgi_types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``["10.0.0.0/8", "127.0.0.1"]`` → networks; a single address is a /32 (or /128)."""
    networks = []
    for entry in entries:
        entry = entry.strip()
        if entry:
            networks.append(ipaddress.ip_network(entry, strict=False))
    return tuple(networks)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return address.ipv4_mapped or address if isinstance(address, ipaddress.IPv6Address) else address


class TrustedProxyMiddleware:
    """ASGI middleware: the client address and scheme from a trusted proxy's headers, else the peer's."""

    def __init__(self, app: ASGIApp, trusted: Iterable[str] | None = None) -> None:
        self.app = app
        self.trusted = parse_networks(settings.TRUSTED_PROXIES if trusted is None else trusted)

    def is_trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
        return address is not None and any(address in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted and scope["type"] in ("http", "websocket") and scope.get("client"):
            peer = _address(str(scope["client"][0]))
            if self.is_trusted(peer):
                scope = self.forwarded(scope)
        return await self.app(scope, receive, send)

    def forwarded(self, scope: Scope) -> Scope:
        forwarded_for: list[str] = []
        proto = None
        for name, value in scope.get("headers", ()):
            if name == b"x-forwarded-for":
                forwarded_for.extend(value.decode("latin-1").split(","))
            elif name == b"x-forwarded-proto":
                proto = value.decode("latin-1").split(",")[-1].strip().lower()
        scope = dict(scope)
        # Right to left: each trusted proxy appended the address it saw; the first address that
        # is not a trusted proxy is the client (anything left of it the client could have made up).
        for entry in reversed(forwarded_for):
            address = _address(entry)
            if address is None:
                break  # garbage from the client side of the chain: keep the last trusted hop
            if not self.is_trusted(address):
                scope["client"] = (str(address), 0)
                break
            scope["client"] = (str(address), 0)
        if proto in ("http", "https"):
            if scope["type"] == "websocket":
                scope["scheme"] = "wss" if proto == "https" else "ws"
            else:
                scope["scheme"] = proto
        return scope
