"""WebSocket URL routes, mounted by the root asgi.py (behind the origin check and the connect throttle)."""

from django.urls import path, re_path

from .consumers import KioskConsumer, LivePredictConsumer

websocket_urlpatterns = [
    path("ws/predict/", LivePredictConsumer.as_asgi(), name="ws-predict"),
    re_path(r"^ws/kiosk/(?P<board>[A-Za-z0-9_-]{1,64})/$", KioskConsumer.as_asgi(), name="ws-kiosk"),
]
