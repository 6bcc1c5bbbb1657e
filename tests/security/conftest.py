"""Fixtures for attacks on a real daphne: one server per module, raw HTTP/1.1 and WebSocket clients
closed after the test whatever it asserted."""

from __future__ import annotations

import socket

import pytest

from tests.servers import daphne_servers
from tests.websocket_raw import RawWebSocket, read_response


@pytest.fixture(scope="module")
def daphne(module_server_env):
    """One daphne process (``python -m project.serve``) shared by the tests of a module: each
    attack there also checks that the server still answers afterwards, and a new process costs
    seconds of CPU. A test that measures the process (its memory) starts its own."""
    with daphne_servers(module_server_env, 1) as (server,):
        yield server


@pytest.fixture
def fresh_daphne(server_env):
    """A daphne process of the test's own, over the test's own database copy."""
    with daphne_servers(server_env, 1) as (server,):
        yield server


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
def raw_websocket():
    """``raw_websocket(port, path, receive_buffer=4096)``: a ``RawWebSocket`` (tests/websocket_raw.py)
    that never reads; every one opened here is closed after the test."""
    opened: list[RawWebSocket] = []

    def open_raw(port: int, path: str, **options) -> RawWebSocket:
        client = RawWebSocket(port, path, **options)
        opened.append(client)
        return client

    yield open_raw
    for client in opened:
        client.close()


@pytest.fixture
def daphne_with_redis(redis_env):
    """One daphne process whose channel layer and kiosk boards live in the test's redis-server."""
    with daphne_servers(redis_env) as [server]:
        yield server
