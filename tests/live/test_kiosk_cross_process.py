"""Kiosk boards across two real daphne processes sharing one real redis-server."""

from __future__ import annotations

import json
import signal
import time

import pytest

from ml_engine.schema import FEATURE_KEYS
from tests.samples import PARTIAL_PERSON, TIMEOUT
from tests.servers import DaphneServer, ask, daphne_servers, share

pytestmark = [pytest.mark.redis, pytest.mark.slow]


class Kiosk:
    """A kiosk socket that keeps every message it receives, to check none carries a feature."""

    def __init__(self, server: DaphneServer, board: str):
        self.ws = server.connect(f"/ws/kiosk/{board}/", max_size=None)
        self.seen: list[dict] = []

    def next(self, timeout: float = TIMEOUT) -> dict:
        message = json.loads(self.ws.recv(timeout=timeout))
        assert not set(message) & set(FEATURE_KEYS), message
        assert not any(key in json.dumps(message) for key in FEATURE_KEYS), message
        self.seen.append(message)
        return message

    def until(self, predicate, timeout: float = TIMEOUT) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            message = self.next(max(0.1, deadline - time.monotonic()))
            if predicate(message):
                return message

    def __enter__(self) -> Kiosk:
        self.ws.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.ws.__exit__(*exc)


def predict(ws, seq: int, features: dict) -> dict:
    reply = ask(ws, {"type": "update", "seq": seq, "features": features})
    assert reply["type"] == "prediction", reply
    return reply


@pytest.fixture(scope="module")
def two_servers(module_redis_env):
    """Two processes and their redis-server, shared by the tests that leave both running; every
    test uses its board's sessions only while its live socket is open."""
    with daphne_servers(module_redis_env, 2) as servers:
        yield servers


@pytest.fixture
def two_own_servers(redis_env):
    """Two processes of the test's own (for a test that kills one)."""
    with daphne_servers(redis_env, 2) as servers:
        yield servers


def test_a_kiosk_on_one_process_sees_a_session_typed_on_the_other(two_servers):
    a, b = two_servers
    with Kiosk(b, "lobby") as kiosk:
        assert kiosk.next()["type"] == "snapshot"
        with a.connect(max_size=None) as live:
            share(live, "lobby")
            reply = predict(live, 1, PARTIAL_PERSON)
            event = kiosk.until(lambda m: m["type"] == "session")
            assert event["risk"] == reply["risk"] and event["band"] == reply["band"]
            assert set(event) == {"type", "id", "risk", "band", "percent", "updated_at"}
            reply = predict(live, 2, {"glucose": 90})
            event2 = kiosk.until(lambda m: m["type"] == "session" and m["risk"] == reply["risk"])
            assert event2["id"] == event["id"]
        # closing the live socket ends the session on every kiosk
        assert kiosk.until(lambda m: m["type"] == "session_end") == {"type": "session_end", "id": event["id"]}


def test_a_late_kiosk_gets_the_session_in_its_snapshot(two_servers):
    a, b = two_servers
    with a.connect(max_size=None) as live:
        share(live, "ward")
        reply = predict(live, 1, PARTIAL_PERSON)
        time.sleep(0.5)  # let the publisher's task write the board
        with Kiosk(b, "ward") as kiosk:
            snapshot = kiosk.next()
        assert snapshot["type"] == "snapshot" and snapshot["board"] == "ward"
        [session] = snapshot["sessions"]
        assert session["risk"] == reply["risk"] and session["band"] == reply["band"]
        assert snapshot["stats"]["active"] == 1
        assert snapshot["stats"]["by_band"][reply["band"]] == 1
        with Kiosk(b, "elsewhere") as other:
            assert other.next()["sessions"] == []


def test_an_idle_kiosk_still_receives_after_12_s(two_servers):
    a, b = two_servers
    with Kiosk(b, "lobby") as kiosk:
        assert kiosk.next()["type"] == "snapshot"
        time.sleep(12)  # past the ~5 s after which redis-py 8 would drop an idle channel-layer socket
        with a.connect(max_size=None) as live:
            share(live, "lobby")
            reply = predict(live, 1, PARTIAL_PERSON)
            assert kiosk.until(lambda m: m["type"] == "session")["risk"] == reply["risk"]
    assert "Traceback" not in b.log(), b.log()


def test_sessions_of_a_process_that_died_disappear_within_30_s(two_own_servers):
    a, b = two_own_servers
    with Kiosk(b, "lobby") as kiosk, a.connect(max_size=None) as live:
        assert kiosk.next()["type"] == "snapshot"
        share(live, "lobby")
        predict(live, 1, PARTIAL_PERSON)
        session = kiosk.until(lambda m: m["type"] == "session")
        a.proc.send_signal(signal.SIGKILL)  # no goodbye from process A
        a.proc.wait(10)
        ended = kiosk.until(lambda m: m["type"] == "session_end", timeout=30)
        assert ended["id"] == session["id"]
