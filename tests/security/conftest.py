"""Fixtures for attacks on a real daphne: one server per test and a raw HTTP/1.1 client."""

from __future__ import annotations

import socket

import pytest

from tests.servers import daphne_servers


@pytest.fixture
def daphne(server_env):
    """One daphne process (``python -m project.serve``) over the test's own database copy."""
    with daphne_servers(server_env, 1) as (server,):
        yield server


def read_response(sock: socket.socket, *, limit: int = 1 << 20) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP/1.1 response with a Content-Length (bounded read)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} bytes: {data[:200]!r}")
        data += chunk
        assert len(data) < limit
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {name.strip().lower(): value.strip() for name, value in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    assert length < limit
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, headers, body


@pytest.fixture
def raw_http():
    """Send raw bytes to 127.0.0.1:port and read one response: ``raw_http(port, data)``."""
    opened: list[socket.socket] = []

    def send(port: int, data: bytes, *, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        opened.append(sock)
        sock.sendall(data)
        return read_response(sock)

    yield send
    for sock in opened:
        sock.close()


@pytest.fixture
def redis_env(server_env, redis_server):
    """The environment for daphne processes sharing the test's redis-server."""
    server_env.redis_url = redis_server.url
    return server_env


@pytest.fixture
def daphne_with_redis(redis_env):
    """One daphne process whose channel layer and kiosk boards live in the test's redis-server."""
    with daphne_servers(redis_env) as [server]:
        yield server
