"""WebSocket URL routes, mounted by the root asgi.py."""

from django.urls import re_path

from . import consumers

websocket_urlpatterns = [
    re_path(r"^ws/kiosk/(?P<board>[A-Za-z0-9_-]{1,50})/$", consumers.KioskConsumer.as_asgi()),
]
