"""Connections until the process runs out of file descriptors: at start daphne raises its soft
limit to the hard one and says so; when accept() fails it logs that it is refusing connections
(instead of failing silently), and once the connections close it serves again."""

import contextlib
import resource
import socket
import subprocess
import sys
import time

import requests

from tests.servers import ROOT, free_port, wait_for_port

HARD_LIMIT = 128  # descriptors for the daphne process under test
DEADLINE = 60.0


def _limit_descriptors():
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, HARD_LIMIT))


def test_running_out_of_descriptors_is_logged_and_survived(server_env):
    port = free_port()
    log_path = server_env.base / "daphne-fd.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "project.serve", "-b", "127.0.0.1", "-p", str(port), "asgi:application"],
            cwd=ROOT,
            env=server_env.environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_limit_descriptors,
        )
    held: list[socket.socket] = []
    try:
        wait_for_port(port, timeout=30, proc=proc)
        assert f"{HARD_LIMIT} file descriptors" in log_path.read_text()  # soft limit raised to the hard one
        deadline = time.monotonic() + DEADLINE
        while "out of file descriptors" not in log_path.read_text():
            assert time.monotonic() < deadline, "no log line when accept() failed"
            for _ in range(20):
                with contextlib.suppress(OSError):
                    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
                    held.append(sock)
            assert len(held) < 10 * HARD_LIMIT
            time.sleep(0.2)
    finally:
        for sock in held:
            sock.close()
    try:
        deadline = time.monotonic() + DEADLINE
        while True:
            try:
                response = requests.get(f"http://127.0.0.1:{port}/v2/health/live", timeout=5)
                break
            except requests.RequestException:
                assert time.monotonic() < deadline, "daphne did not recover"
                time.sleep(0.2)
        assert response.status_code == 200
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
