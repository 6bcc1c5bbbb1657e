"""WebSocket URL routes, mounted by the root asgi.py."""

websocket_urlpatterns = []
