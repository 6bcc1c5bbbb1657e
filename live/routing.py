"""WebSocket URL routes, mounted by the root asgi.py (behind AllowedHostsOriginValidator)."""

from django.urls import path

from .consumers import LivePredictConsumer

websocket_urlpatterns = [
    path("ws/predict/", LivePredictConsumer.as_asgi(), name="ws-predict"),
]
