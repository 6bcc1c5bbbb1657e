"""A client that trickles its request (slowloris) or opens a connection and sends nothing is
answered 408 / disconnected after HTTP_REQUEST_TIMEOUT / HTTP_IDLE_TIMEOUT, whatever it sends."""

import socket
import time

import requests

from tests.servers import daphne_servers
from tests.websocket_raw import read_response

DEADLINE = 60.0  # far above the configured timeouts: the test bounds itself, it measures nothing


def test_trickled_headers_get_408_and_a_closed_connection(server_env):
    # The request deadline comes before the idle timeout, as with the defaults (15 s and 30 s): with
    # both at 2 s, the silent connection below was answered 408 or closed unanswered, whichever
    # timer the reactor ran first.
    server_env.extra.update(HTTP_REQUEST_TIMEOUT="2", HTTP_IDLE_TIMEOUT="4")
    with daphne_servers(server_env, 1) as (server,):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
        try:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            header = b"X-Slow: " + b"a" * 200
            answered = None
            started = time.monotonic()
            for byte in header:  # one byte every 0.2 s resets any idle timer; the request deadline holds
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    break
                sock.settimeout(0.2)
                try:
                    answered = sock.recv(65536, socket.MSG_PEEK)
                except TimeoutError:
                    continue
                finally:
                    sock.settimeout(DEADLINE)
                if answered:
                    break
                assert time.monotonic() - started < DEADLINE
            assert answered, "the trickling client was never answered"
            status, _, body = read_response(sock)
            assert status == 408
            assert b"did not arrive in time" in body
            assert sock.recv(1) == b""  # closed
        finally:
            sock.close()
        # The idle connection: nothing sent, answered 408 and closed by the server.
        idle = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
        try:
            status, _, _ = read_response(idle)
            assert status == 408
            assert idle.recv(1) == b""
        finally:
            idle.close()
        assert requests.get(f"{server.http}/v2/health/live", timeout=10).status_code == 200
