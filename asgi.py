"""The ASGI entry point: ``daphne asgi:application`` serves HTTP and WebSockets from here."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# Django must be set up before anything imports models, so this comes before the routing import.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from api.asgi import PredictionRoute  # noqa: E402
from live.routing import websocket_urlpatterns  # noqa: E402
from live.sockets import SocketLimits  # noqa: E402
from ml_engine.registry import active_model  # noqa: E402
from project.origin import OriginCheckMiddleware  # noqa: E402
from project.proxy import TrustedProxyMiddleware  # noqa: E402
from project.throttling import WebSocketConnectThrottle  # noqa: E402

# Follow `manage.py activate` from any process: the served version is re-checked every second.
active_model.start_watcher(settings.MODEL_WATCH_INTERVAL)

# The client address first (a trusted proxy's X-Forwarded-For, else the peer: README "Behind a
# proxy"); then the prediction endpoints, answered without Django's per-request thread hops
# (README: "The request path"); then for sockets: the page's origin (scheme, host and port),
# connects per address, then open sockets per address, board and process (docs/kiosk.md, "Open
# sockets per address").
application = TrustedProxyMiddleware(
    PredictionRoute(
        ProtocolTypeRouter(
            {
                "http": django_asgi_app,
                "websocket": OriginCheckMiddleware(
                    WebSocketConnectThrottle(SocketLimits(URLRouter(websocket_urlpatterns)))
                ),
            }
        ),
        django=django_asgi_app,
    )
)
