"""Connections until the process runs out of file descriptors: at start daphne raises its soft
limit to the hard one and says so; when accept() fails it logs that it is refusing connections
(instead of failing silently), and once the connections close it serves again."""

import contextlib
import resource
import socket
import time

import requests

from tests.servers import DaphneServer

HARD_LIMIT = 128  # descriptors for the daphne process under test
DEADLINE = 60.0


def _limit_descriptors():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, HARD_LIMIT))


def test_running_out_of_descriptors_is_logged_and_survived(server_env):
    server = DaphneServer(server_env, preexec_fn=_limit_descriptors).start()
    held: list[socket.socket] = []
    try:
        try:
            assert f"{HARD_LIMIT} file descriptors" in server.log()  # soft limit raised to the hard one
            deadline = time.monotonic() + DEADLINE
            while "out of file descriptors" not in server.log():
                assert time.monotonic() < deadline, "no log line when accept() failed"
                for _ in range(20):
                    with contextlib.suppress(OSError):
                        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
                        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
                        held.append(sock)
                assert len(held) < 10 * HARD_LIMIT
                time.sleep(0.2)
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                response = requests.get(f"{server.http}/v2/health/live", timeout=5)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, "daphne did not recover"
                time.sleep(0.2)
        assert response.status_code == 200
        assert server.proc.poll() is None
    finally:
        server.stop()
