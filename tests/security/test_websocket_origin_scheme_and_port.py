"""The WebSocket origin check compares scheme, host and port: ``http://127.0.0.1:9`` and
``https://localhost`` are refused for a server on ``http://127.0.0.1:PORT``; the server's own
origin and one listed in DJANGO_CSRF_TRUSTED_ORIGINS are accepted; no Origin is refused."""

import pytest
from websockets.exceptions import InvalidStatus

from tests.servers import daphne_servers


def test_origin_must_match_scheme_host_and_port(server_env):
    server_env.extra["DJANGO_CSRF_TRUSTED_ORIGINS"] = "https://kiosk.example.org"
    with daphne_servers(server_env, 1) as (server,):
        for origin in (f"http://127.0.0.1:{server.port}", "https://kiosk.example.org"):
            with server.connect(origin=origin):
                pass
        for origin in (
            "http://127.0.0.1:9",
            "https://localhost",
            f"https://127.0.0.1:{server.port}",
            "http://127.0.0.1",
            f"http://localhost:{server.port}",  # a page elsewhere: the Host here is 127.0.0.1
            "http://kiosk.example.org",
            None,
        ):
            with pytest.raises(InvalidStatus) as refused:
                server.connect(origin=origin)
            assert refused.value.response.status_code == 403, origin
        # An opaque origin ("null") is already refused by daphne's WebSocket layer, with 400.
        with pytest.raises(InvalidStatus) as refused:
            server.connect(origin="null")
        assert refused.value.response.status_code in (400, 403)
