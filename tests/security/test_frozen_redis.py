"""A frozen Redis (SIGSTOP): an open kiosk is closed instead of hanging while it looks live, a new
kiosk is answered with a close instead of a hung handshake, and both recover after SIGCONT."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.samples import PARTIAL_PERSON, TIMEOUT
from tests.servers import DaphneServer, share

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CLOSE_INTERNAL_ERROR = 1011


def kiosk(server: DaphneServer):
    return server.connect("/ws/kiosk/frozen/")


def close_code(ws) -> int:
    """Read until the server closes the socket; its close code."""
    deadline = time.monotonic() + TIMEOUT
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            assert message["type"] in ("snapshot", "heartbeat", "session", "session_end"), message
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


def board_back(server: DaphneServer) -> bool:
    """Whether a new kiosk gets the board again, with the session typed during the freeze on it
    (in the snapshot, or as an event just after it, once its retry got through)."""
    with kiosk(server) as again:
        try:
            message = json.loads(again.recv(timeout=TIMEOUT))
        except ConnectionClosed:
            return False
        assert message["type"] == "snapshot"
        while message["type"] != "session" and message.get("stats", {}).get("active") != 1:
            message = json.loads(again.recv(timeout=TIMEOUT))
        return True


@pytest.fixture
def frozen(redis_server):
    """The redis-server, thawed at the end whatever happens (before daphne stops)."""
    yield redis_server
    redis_server.thaw()


def test_a_frozen_redis_closes_kiosks_and_they_recover(daphne_with_redis, frozen):
    server = daphne_with_redis
    with kiosk(server) as open_kiosk, server.connect() as live:
        share(live, "frozen")
        assert json.loads(open_kiosk.recv(timeout=TIMEOUT))["type"] == "snapshot"
        heartbeat = json.loads(open_kiosk.recv(timeout=TIMEOUT))
        assert heartbeat["type"] == "heartbeat" and set(heartbeat) == {"type", "at", "active"}

        frozen.freeze()
        # The open kiosk is not left hanging while it looks live: the server closes it.
        assert close_code(open_kiosk) == CLOSE_INTERNAL_ERROR
        # A new kiosk is answered (accepted, then closed with 1011), not left in a hung handshake.
        with kiosk(server) as late:
            assert close_code(late) == CLOSE_INTERNAL_ERROR
        # The person typing is not affected.
        live.send(json.dumps({"type": "update", "seq": 1, "features": PARTIAL_PERSON}))
        assert json.loads(live.recv(timeout=TIMEOUT))["type"] == "prediction"

        frozen.thaw()
        deadline = time.monotonic() + TIMEOUT
        while not board_back(server):  # the kiosk page's reconnection loop, in short
            assert time.monotonic() < deadline, "the board never came back"
            time.sleep(0.5)
    assert "Traceback" not in server.log(), server.log()
