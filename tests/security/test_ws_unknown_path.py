"""Attack: WebSocket handshakes on paths no route serves, and kiosk boards with invalid names.

Before, each one was a 500 on the handshake with a full traceback in daphne's log. Now a fallback
route refuses the handshake: 403, nothing logged as an error, and the server keeps serving.
"""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.samples import PERSON
from tests.servers import daphne_servers
from tests.websocket_raw import TIMEOUT

pytestmark = pytest.mark.slow

PATHS = [
    "/ws/nope/",
    "/ws/kiosk/bad$name/",
    "/ws/kiosk/" + "x" * 65 + "/",
    "/ws/kiosk/",
    "/ws/predict/extra/",
    "/",
    "/api/v1/predict",
]


def test_unknown_paths_and_bad_board_names_are_refused_at_the_handshake(server_env):
    with daphne_servers(server_env) as [server]:
        for path in PATHS * 3:
            with pytest.raises(InvalidStatus) as refused:
                connect(f"{server.ws}{path}", origin=server.http, open_timeout=TIMEOUT)
            assert refused.value.response.status_code == 403, path
        with connect(f"{server.ws}/ws/predict/", origin=server.http, open_timeout=TIMEOUT) as calm:
            calm.send(json.dumps({"type": "update", "seq": 0, "features": PERSON}))
            assert json.loads(calm.recv(timeout=TIMEOUT))["type"] == "prediction"
        log = server.log()
        assert "Traceback" not in log and "ERROR" not in log, log
