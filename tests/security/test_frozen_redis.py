"""A frozen Redis (SIGSTOP): an open kiosk is closed instead of hanging while it looks live, a new
kiosk is answered with a close instead of a hung handshake, and both recover after SIGCONT."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.servers import DaphneServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WAIT = 30  # seconds: far more than the few seconds each answer takes, on a shared machine
PERSON = {"glucose": 148, "bmi": 33.6, "age": 50}
CLOSE_INTERNAL_ERROR = 1011


def kiosk(server: DaphneServer):
    return connect(f"{server.ws}/ws/kiosk/frozen/", origin=server.http, open_timeout=WAIT)


def close_code(ws) -> int:
    """Read until the server closes the socket; its close code."""
    deadline = time.monotonic() + WAIT
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
            assert message["type"] in ("snapshot", "heartbeat", "session", "session_end"), message
    assert closed.value.rcvd is not None, "closed without a close frame"
    return closed.value.rcvd.code


@pytest.fixture
def frozen(redis_server):
    """Freeze the redis-server when called; it is thawed at the end whatever happens."""
    state = {"stopped": False}

    def freeze(stop: bool = True) -> None:
        os.kill(redis_server.proc.pid, signal.SIGSTOP if stop else signal.SIGCONT)
        state["stopped"] = stop

    yield freeze
    if state["stopped"]:
        os.kill(redis_server.proc.pid, signal.SIGCONT)


def test_a_frozen_redis_closes_kiosks_and_they_recover(daphne_with_redis, frozen):
    server = daphne_with_redis
    with (
        kiosk(server) as open_kiosk,
        connect(f"{server.ws}/ws/predict/?board=frozen", origin=server.http, open_timeout=WAIT) as live,
    ):
        assert json.loads(open_kiosk.recv(timeout=WAIT))["type"] == "snapshot"
        heartbeat = json.loads(open_kiosk.recv(timeout=WAIT))
        assert heartbeat["type"] == "heartbeat" and set(heartbeat) == {"type", "at", "active"}

        frozen()
        # The open kiosk is not left hanging while it looks live: the server closes it.
        assert close_code(open_kiosk) == CLOSE_INTERNAL_ERROR
        # A new kiosk is answered (accepted, then closed with 1011), not left in a hung handshake.
        with kiosk(server) as late:
            assert close_code(late) == CLOSE_INTERNAL_ERROR
        # The person typing is not affected.
        live.send(json.dumps({"type": "update", "seq": 1, "features": PERSON}))
        assert json.loads(live.recv(timeout=WAIT))["type"] == "prediction"

        frozen(stop=False)
        deadline = time.monotonic() + WAIT
        while True:  # the kiosk page's reconnection loop, in short
            with kiosk(server) as again:
                try:
                    message = json.loads(again.recv(timeout=WAIT))
                except ConnectionClosed:
                    assert time.monotonic() < deadline, "the board never came back"
                    time.sleep(0.5)
                    continue
            break
        assert message["type"] == "snapshot" and message["stats"]["active"] == 1
    assert "Traceback" not in server.log(), server.log()
