"""Attack: WebSocket handshakes on paths no route serves, and kiosk boards with invalid names.

Before, each one was a 500 on the handshake with a full traceback in daphne's log. Now a fallback
route refuses the handshake: 403, nothing logged as an error, and the server keeps serving.
"""

from __future__ import annotations

import pytest
from websockets.exceptions import InvalidStatus

from tests.servers import calm_prediction, daphne_servers

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
                server.connect(path)
            assert refused.value.response.status_code == 403, path
        assert calm_prediction(server)["type"] == "prediction"
        log = server.log()
        assert "Traceback" not in log and "ERROR" not in log, log
