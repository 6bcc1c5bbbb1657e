"""Attack: live updates carrying ~480 unknown keys (about 5 KB each), on many board sockets.

Before, the error reply named every key (over 64 KiB): the send failed inside the consumer, the
socket closed with 1011 and its cleanup never ran, so the kiosk tile and the open-sockets gauge
leaked for good. Now the error names three keys and counts the rest, and whatever ends a socket
releases it exactly once.
"""

from __future__ import annotations

import json

import pytest

from tests.samples import PERSON, TIMEOUT
from tests.servers import calm_prediction, daphne_servers, share, wait_until
from tests.websocket_raw import open_websockets

pytestmark = pytest.mark.slow

SOCKETS = 10
ATTACK = {"glucose": 148, **{f"unknown_feature_{i:03d}": 1 for i in range(480)}}


def test_unknown_keys_get_a_small_error_and_every_socket_is_released(server_env, raw_websocket):
    with daphne_servers(server_env) as [server]:
        baseline = open_websockets(server.http)
        with server.connect("/ws/kiosk/attack/", max_size=None) as kiosk:
            assert json.loads(kiosk.recv(timeout=TIMEOUT))["type"] == "snapshot"
            ended: set[str] = set()
            for n in range(SOCKETS):
                with server.connect(max_size=None) as ws:
                    share(ws, "attack")
                    ws.send(json.dumps({"type": "update", "seq": 1, "features": PERSON}))
                    assert json.loads(ws.recv(timeout=TIMEOUT))["type"] == "prediction"
                    while (event := json.loads(kiosk.recv(timeout=TIMEOUT)))["type"] != "session":
                        if event["type"] == "session_end":  # the previous socket's tile going
                            ended.add(event["id"])
                    frame = json.dumps({"type": "update", "seq": 2, "features": ATTACK})
                    assert 5_000 < len(frame) < 65_536
                    ws.send(frame)
                    reply = ws.recv(timeout=TIMEOUT)
                    assert len(reply) < 2048, len(reply)
                    error = json.loads(reply)
                    assert error["type"] == "error" and error["seq"] == 2
                    assert error["errors"]["non_field_errors"] == ["And 477 more unknown features."]
                    # The socket stays open and its state is untouched by the refused update.
                    ws.send(json.dumps({"type": "update", "seq": 3, "features": {"age": 51}}))
                    assert json.loads(ws.recv(timeout=TIMEOUT))["features"]["glucose"] == PERSON["glucose"]
                    if n % 2:
                        ws.socket.close()  # half of them vanish without a close frame
            # A raw client that sends the attack and drops the connection without reading.
            raw = raw_websocket(server.port, "/ws/predict/")
            raw.send_text(json.dumps({"type": "share", "board": "attack"}))
            raw.send_text(json.dumps({"type": "update", "seq": 1, "features": ATTACK}))
            raw.close()

            wait_until(lambda: open_websockets(server.http) == baseline, "the live gauge is back to its value")
            while len(ended) < SOCKETS:  # every tile that appeared is taken off the board
                event = json.loads(kiosk.recv(timeout=TIMEOUT))
                if event["type"] == "session_end":
                    ended.add(event["id"])
        with server.connect("/ws/kiosk/attack/", max_size=None) as kiosk:
            assert json.loads(kiosk.recv(timeout=TIMEOUT))["sessions"] == []
        assert calm_prediction(server)["type"] == "prediction"
        assert open_websockets(server.http) == baseline
        assert "Traceback" not in server.log(), server.log()
