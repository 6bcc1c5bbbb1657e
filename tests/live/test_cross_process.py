"""The live socket on a real daphne process, with a real redis-server as the channel layer."""

from __future__ import annotations

import json
import time

import pytest
from websockets.exceptions import ConnectionClosed

from tests.samples import TIMEOUT
from tests.servers import ask, daphne_servers, share


@pytest.mark.redis
@pytest.mark.slow
def test_a_socket_idle_for_12_s_on_redis_still_answers(redis_env):
    with daphne_servers(redis_env) as [server], server.connect(max_size=None) as ws:
        share(ws, "lobby")  # the kiosk board's publications go through Redis too
        first = ask(ws, {"type": "update", "seq": 1, "features": {"glucose": 148, "age": 50}})
        assert first["type"] == "prediction" and first["seq"] == 1
        time.sleep(12)  # longer than the 5 s after which redis-py 8 would drop an idle socket
        second = ask(ws, {"type": "update", "seq": 2, "features": {"bmi": 33.6}})
        assert second["type"] == "prediction" and second["seq"] == 2
        assert second["features"]["glucose"] == 148 and second["features"]["bmi"] == 33.6
        assert "Traceback" not in server.log(), server.log()


@pytest.mark.redis
@pytest.mark.slow
def test_killing_redis_mid_session_does_not_stop_the_live_socket(redis_env, redis_server):
    with daphne_servers(redis_env) as [server], server.connect(max_size=None) as ws:
        share(ws, "lobby")
        assert ask(ws, {"type": "update", "seq": 1, "features": {"glucose": 148}})["type"] == "prediction"
        redis_server.kill()
        for seq in range(2, 12):
            reply = ask(ws, {"type": "update", "seq": seq, "features": {"age": 20 + seq}})
            assert reply["type"] == "prediction" and reply["seq"] == seq
            time.sleep(0.3)
        assert ask(ws, {"type": "reset", "seq": 12}) == {"type": "cleared", "seq": 12}
        with server.connect(max_size=None) as other:  # a new socket opens and answers while Redis is down
            assert ask(other, {"type": "update", "seq": 0, "features": {"bmi": 30}})["type"] == "prediction"
        redis_server.start()
        assert ask(ws, {"type": "update", "seq": 13, "features": {"bmi": 30}})["type"] == "prediction"


@pytest.fixture(scope="module")
def server(module_server_env):
    """One daphne without Redis, for the tests below."""
    with daphne_servers(module_server_env) as [server]:
        yield server


@pytest.mark.slow
def test_daphne_closes_a_frame_over_64_kib_with_1009_and_serves_others(server):
    with server.connect(max_size=None) as ws:
        ws.send(json.dumps({"type": "update", "seq": 1, "features": {}, "pad": "x" * 70000}))
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    with server.connect(max_size=None) as ws:
        assert ask(ws, {"type": "update", "seq": 0, "features": {"age": 50}})["type"] == "prediction"


@pytest.mark.slow
def test_daphne_refuses_a_foreign_origin(server):
    with pytest.raises(Exception) as refused:
        server.connect(origin="http://evil.example")
    assert "403" in str(refused.value)
