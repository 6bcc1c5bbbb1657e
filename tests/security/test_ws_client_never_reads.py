"""Attack: a client that sends but never reads (it never answers a ping either).

Before, daphne restarted its ping timer on every incoming frame, so such a client was never
pinged out, and the server buffered every reply for it without limit (8 sockets added 1.1 GiB in
30 s). Now a socket whose unsent replies pass the send-buffer limit is closed with 1008 and costs
no more memory, and an unanswered ping closes a socket whatever the client keeps sending.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from tests.samples import PERSON
from tests.servers import ask, calm_prediction, daphne_servers, wait_until
from tests.websocket_raw import RawWebSocket, open_websockets, resident_kib

pytestmark = pytest.mark.slow

# Every value out of range plus three unknown keys: each frame (about 220 bytes) earns an error
# reply of about 1.3 KB, sent at once from the receive loop.
BAD = {**{key: -1 for key in PERSON}, "a": 1, "b": 2, "c": 3}
ATTACKERS = 8
MIB = 1024


def bad_update(client: RawWebSocket, seq: int) -> None:
    client.send_text(json.dumps({"type": "update", "seq": seq, "features": BAD}))


def ping(client: RawWebSocket, seq: int) -> None:
    client.send_ping()


def sends_until_dropped(
    clients: list[RawWebSocket], *, pace: float, limit: float, send: Callable[[RawWebSocket, int], None] = bad_update
) -> list[bool]:
    """Keep every client sending (BAD updates by default, each under the flood limit) until the
    server drops it."""
    dropped = [False] * len(clients)
    seq = 0
    deadline = time.monotonic() + limit
    while not all(dropped) and time.monotonic() < deadline:
        seq += 1
        for i, client in enumerate(clients):
            if dropped[i]:
                continue
            try:
                send(client, seq)
            except OSError:  # reset by the server (a send that blocks for TIMEOUT counts too)
                dropped[i] = True
        time.sleep(pace)
    return dropped


def test_a_client_that_never_reads_is_closed_when_its_replies_pile_up(server_env, raw_websocket):
    # Pings every 10 minutes: here only the send-buffer bound can close the socket.
    with daphne_servers(server_env, flags=("--ping-interval", "600", "--ping-timeout", "600")) as [server]:
        assert calm_prediction(server)["type"] == "prediction"
        baseline = open_websockets(server.http)
        before = resident_kib(server.proc.pid)
        clients = [raw_websocket(server.port, "/ws/predict/") for _ in range(ATTACKERS)]
        # 50 frames a second per socket: under the flood limit, so every frame gets its reply.
        dropped = sends_until_dropped(clients, pace=0.02, limit=120)
        peak = resident_kib(server.proc.pid)
        for client in clients:
            client.close()
        assert all(dropped), "the server closes every socket that does not read"
        assert peak - before < 100 * MIB, f"resident memory grew by {(peak - before) / MIB:.0f} MiB"
        wait_until(lambda: open_websockets(server.http) == baseline, "the live gauge is back to its value")
        assert calm_prediction(server)["type"] == "prediction"
        log = server.log()
        assert "does not read what it is sent: closed with 1008" in log, log
        assert "Traceback" not in log, log


def test_an_unanswered_ping_closes_a_socket_that_keeps_sending(server_env, raw_websocket):
    with daphne_servers(server_env, flags=("--ping-interval", "1", "--ping-timeout", "2")) as [server]:
        baseline = open_websockets(server.http)
        # A real client answers pings while it waits: it stays open however long it is idle.
        with server.connect() as calm:
            silent = raw_websocket(server.port, "/ws/predict/")
            # Ten small frames a second, each answered with a small reply: no buffer fills up.
            seq = 0
            deadline = time.monotonic() + 60
            dropped = False
            while not dropped and time.monotonic() < deadline:
                seq += 1
                try:
                    silent.send_text(json.dumps({"type": "reset", "seq": seq}))
                except OSError:
                    dropped = True
                time.sleep(0.1)
            silent.close()
            assert dropped, "the server drops a socket that never answers its pings"
            assert ask(calm, {"type": "update", "seq": 0, "features": PERSON})["type"] == "prediction"
        wait_until(lambda: open_websockets(server.http) == baseline, "the live gauge is back to its value")
        assert "Traceback" not in server.log(), server.log()


def test_a_client_that_pings_and_never_reads_the_pongs_is_closed(server_env, raw_websocket):
    # Pongs are written by the WebSocket layer itself, not the application: the same bound holds.
    with daphne_servers(server_env, flags=("--ping-interval", "600", "--ping-timeout", "600")) as [server]:
        before = resident_kib(server.proc.pid)
        clients = [raw_websocket(server.port, "/ws/predict/") for _ in range(ATTACKERS)]
        dropped = sends_until_dropped(clients, pace=0.0005, limit=120, send=ping)
        peak = resident_kib(server.proc.pid)
        for client in clients:
            client.close()
        assert all(dropped), "the server closes every socket that does not read its pongs"
        assert peak - before < 100 * MIB, f"resident memory grew by {(peak - before) / MIB:.0f} MiB"
        assert calm_prediction(server)["type"] == "prediction"
        log = server.log()
        assert "does not read what it is sent: closed with 1008" in log, log
        assert "Traceback" not in log, log
