"""Which pages may open a WebSocket here: scheme, host and port must all match.

README: "Behind a proxy". A browser sends the page's origin with every WebSocket handshake. The
handshake is accepted when that origin is the server itself (the scheme of the request, ``ws`` as
``http`` and ``wss`` as ``https``, and the ``Host`` header, which must be in ``ALLOWED_HOSTS``), or
is listed in ``CSRF_TRUSTED_ORIGINS`` (the same list the form's CSRF check uses). A missing or
unparsable Origin is refused. Channels' ``AllowedHostsOriginValidator`` compares host names only,
so ``http://127.0.0.1:9`` or ``https://localhost`` passed for a server on ``http://127.0.0.1:8000``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from .asgi_types import ASGIApp, Receive, Scope, Send

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]


def parse_origin(text: str) -> Origin | None:
    """``"http://Example.com:8000"`` → ``("http", "example.com", 8000)``; ``None`` if not an origin."""
    try:
        parts = urlsplit(text.strip())
        scheme, host, port = parts.scheme.lower(), (parts.hostname or ""), parts.port
    except ValueError:
        return None
    if scheme not in DEFAULT_PORTS or not host or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    return scheme, host.lower(), port or DEFAULT_PORTS[scheme]


def _matches(origin: Origin, pattern: str) -> bool:
    scheme, host, port = origin
    if "://*." in pattern:  # Django's CSRF_TRUSTED_ORIGINS wildcard: https://*.example.com
        pattern_scheme, _, rest = pattern.partition("://*.")
        wanted = parse_origin(f"{pattern_scheme}://{rest}")
        return (
            wanted is not None
            and wanted[0] == scheme
            and wanted[2] == port
            and (host == wanted[1] or host.endswith("." + wanted[1]))
        )
    return parse_origin(pattern) == origin


class OriginCheckMiddleware:
    """ASGI middleware for the WebSocket stack: deny (HTTP 403) a handshake from a foreign origin."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not self.allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)

    def allowed(self, scope: Scope) -> bool:
        headers = dict(scope.get("headers", ()))
        origin_header = headers.get(b"origin")
        if origin_header is None:
            return False
        origin = parse_origin(origin_header.decode("latin-1"))
        if origin is None:
            return False
        if any(_matches(origin, pattern) for pattern in settings.CSRF_TRUSTED_ORIGINS):
            return True
        host_header = headers.get(b"host", b"").decode("latin-1")
        domain, _ = split_domain_port(host_header)
        allowed_hosts = settings.ALLOWED_HOSTS or (["localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
        if not domain or not validate_host(domain, allowed_hosts):
            return False
        scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
        return parse_origin(f"{scheme}://{host_header}") == origin
