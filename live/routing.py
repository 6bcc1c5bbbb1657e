"""WebSocket URL routes, mounted by the root asgi.py (behind the origin check and the connect throttle).

Any other WebSocket path (an unknown one, a kiosk board name that is not 1-64 letters, digits,
``-`` or ``_``) is refused at the handshake: daphne answers 403, with no traceback in its log
(README: "Hardening").
"""

from django.urls import path, re_path

from .consumers import KioskConsumer, LivePredictConsumer


async def refuse_handshake(scope, receive, send) -> None:
    """Close before accepting: the server refuses the handshake (403 under daphne)."""
    if (await receive())["type"] == "websocket.connect":
        await send({"type": "websocket.close"})


websocket_urlpatterns = [
    path("ws/predict/", LivePredictConsumer.as_asgi(), name="ws-predict"),
    re_path(r"^ws/kiosk/(?P<board>[A-Za-z0-9_-]{1,64})/$", KioskConsumer.as_asgi(), name="ws-kiosk"),
    re_path(r"", refuse_handshake, name="ws-refused"),
]
