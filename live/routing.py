"""WebSocket URL routes, mounted by the root asgi.py (behind the origin check and the connect throttle).

Any other WebSocket path (an unknown one, a kiosk board name that is not 1-64 letters, digits,
``-`` or ``_``) is refused at the handshake: daphne answers 403, with no traceback in its log
(README: "Hardening").
"""

from typing import Protocol, cast

from django.urls import URLPattern, path, re_path

from project.asgi_types import ASGIApp, Receive, Scope, Send

from .consumers import KioskConsumer, LivePredictConsumer


async def refuse_handshake(scope: Scope, receive: Receive, send: Send) -> None:
    """Close before accepting: the server refuses the handshake (403 under daphne)."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


class _Route(Protocol):
    def __call__(self, route: str, view: ASGIApp, *, name: str) -> URLPattern: ...


# django-stubs types path() and re_path() for Django views only; Channels' URLRouter takes them
# with ASGI applications too (Channels' documentation, "Routing").
socket_path = cast(_Route, path)
socket_re_path = cast(_Route, re_path)

websocket_urlpatterns = [
    socket_path("ws/predict/", LivePredictConsumer.as_asgi(), name="ws-predict"),
    socket_re_path(r"^ws/kiosk/(?P<board>[A-Za-z0-9_-]{1,64})/$", KioskConsumer.as_asgi(), name="ws-kiosk"),
    socket_re_path(r"", refuse_handshake, name="ws-refused"),
]
