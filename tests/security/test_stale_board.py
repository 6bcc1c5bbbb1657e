"""Sessions left behind by a SIGKILLed daphne: pruned by the processes still on the board, and
expired with the board's keys when none is left, with no kiosk connected at any point."""

from __future__ import annotations

import contextlib
import json
import signal

import pytest
import redis

from live import boards
from tests.samples import PARTIAL_PERSON
from tests.servers import DaphneServer, ask, daphne_servers, share, wait_until

pytestmark = [pytest.mark.redis, pytest.mark.slow]

WAIT = 90  # seconds: expiry (25 s) plus generous slack for the shared test machine
KEYS = tuple(f"board:stale:{part}" for part in ("entries", "seen", "owners", "shares"))


def live_session(stack: contextlib.ExitStack, server: DaphneServer):
    ws = stack.enter_context(server.connect(open_timeout=WAIT))
    share(ws, "stale", timeout=WAIT)
    assert ask(ws, {"type": "update", "seq": 1, "features": PARTIAL_PERSON}, timeout=WAIT)["type"] == "prediction"
    return ws


def killed(server: DaphneServer) -> None:
    server.process.send_signal(signal.SIGKILL)  # no goodbye
    server.process.wait(10)


def test_a_killed_process_leaves_nothing_behind_without_any_kiosk(redis_env, redis_server):
    r = redis.Redis.from_url(redis_server.url)
    with daphne_servers(redis_env, 2) as [doomed, survivor], contextlib.ExitStack() as sockets:
        for _ in range(5):
            live_session(sockets, doomed)
        live_session(sockets, survivor)
        wait_until(lambda: r.hlen(KEYS[0]) == 6, "the six sessions never reached the board", timeout=WAIT)
        for key in KEYS:
            assert 0 < r.pttl(key) <= boards.KEY_TTL_SECONDS * 1000  # every board key expires

        killed(doomed)
        # The survivor's live session keeps the board (and its pruning) going: the five stale
        # entries go, its own stays.
        wait_until(lambda: r.hlen(KEYS[0]) == 1, "the dead process's sessions were never pruned", timeout=WAIT)
        assert r.zcard(KEYS[1]) == 1

        killed(survivor)  # now nobody is left to prune: the keys expire on their own
        wait_until(lambda: not r.exists(*KEYS), "the board outlived every process", timeout=WAIT)
    assert r.keys("board:*") == []

    # A kiosk connecting now gets a clean board.
    with (
        daphne_servers(redis_env) as [server],
        server.connect("/ws/kiosk/stale/", open_timeout=WAIT) as kiosk,
    ):
        snapshot = json.loads(kiosk.recv(timeout=WAIT))
        assert snapshot["sessions"] == [] and snapshot["stats"]["active"] == 0
    r.close()
