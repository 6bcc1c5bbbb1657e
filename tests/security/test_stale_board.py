"""Sessions left behind by a SIGKILLed daphne: pruned by the processes still on the board, and
expired with the board's keys when none is left, with no kiosk connected at any point."""

from __future__ import annotations

import contextlib
import json
import signal
import time

import pytest
import redis
from websockets.sync.client import connect

from live import boards
from tests.servers import DaphneServer, daphne_servers

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WAIT = 90  # seconds: expiry (25 s) plus generous slack for the shared test machine
PERSON = {"glucose": 148, "bmi": 33.6, "age": 50}
KEYS = ("board:stale:entries", "board:stale:seen")


def live_session(stack: contextlib.ExitStack, server: DaphneServer):
    ws = stack.enter_context(connect(f"{server.ws}/ws/predict/?board=stale", origin=server.http, open_timeout=WAIT))
    ws.send(json.dumps({"type": "update", "seq": 1, "features": PERSON}))
    assert json.loads(ws.recv(timeout=WAIT))["type"] == "prediction"
    return ws


def until(predicate, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def killed(server: DaphneServer) -> None:
    server.process.send_signal(signal.SIGKILL)  # no goodbye
    server.process.wait(10)


def test_a_killed_process_leaves_nothing_behind_without_any_kiosk(redis_env, redis_server):
    r = redis.Redis.from_url(redis_server.url)
    with daphne_servers(redis_env, 2) as [doomed, survivor], contextlib.ExitStack() as sockets:
        for _ in range(5):
            live_session(sockets, doomed)
        live_session(sockets, survivor)
        until(lambda: r.hlen(KEYS[0]) == 6, "the six sessions never reached the board")
        for key in KEYS:
            assert 0 < r.pttl(key) <= boards.KEY_TTL_SECONDS * 1000  # every board key expires

        killed(doomed)
        # The survivor's live session keeps the board (and its pruning) going: the five stale
        # entries go, its own stays.
        until(lambda: r.hlen(KEYS[0]) == 1, "the dead process's sessions were never pruned")
        assert r.zcard(KEYS[1]) == 1

        killed(survivor)  # now nobody is left to prune: the keys expire on their own
        until(lambda: not r.exists(*KEYS), "the board outlived every process")
    assert r.keys("board:*") == []

    # A kiosk connecting now gets a clean board.
    with (
        daphne_servers(redis_env) as [server],
        connect(f"{server.ws}/ws/kiosk/stale/", origin=server.http, open_timeout=WAIT) as kiosk,
    ):
        snapshot = json.loads(kiosk.recv(timeout=WAIT))
        assert snapshot["sessions"] == [] and snapshot["stats"]["active"] == 0
    r.close()
