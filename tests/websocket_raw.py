"""Raw loopback clients that misbehave on purpose (WebSocket and HTTP/1.1), and what a test reads
from a daphne process.

``RawWebSocket`` speaks just enough RFC 6455 to open a socket and write masked text and ping frames; it
never reads after the handshake, so it never answers a ping and its replies pile up on the server.
Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import urllib.request
from pathlib import Path

from tests.samples import TIMEOUT


class RawWebSocket:
    """A client that sends text frames and, after the handshake, never reads a byte."""

    def __init__(self, port: int, path: str, *, receive_buffer: int = 4096) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A tiny receive window: the server's replies stay on the server's side.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Origin: http://127.0.0.1:{port}\r\n\r\n"
            ).encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(1)  # byte by byte: read the handshake and nothing after it
            if not chunk:
                raise ConnectionError(f"handshake refused: {response!r}")
            response += chunk
        self.status = int(response.split(b" ", 2)[1])
        if self.status != 101:
            raise ConnectionError(f"handshake refused with {self.status}")

    def send_text(self, text: str) -> None:
        """Write one masked text frame; raises OSError once the server has dropped the connection."""
        self._send_frame(0x1, text.encode())

    def send_ping(self, payload: bytes = b"p" * 125) -> None:
        """Write one masked ping (at most 125 bytes): the server owes a pong this client never reads."""
        self._send_frame(0x9, payload)

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        length = len(payload)
        if length < 126:
            header = bytes([0x80 | opcode, 0x80 | length])
        elif length < 2**16:
            header = bytes([0x80 | opcode, 0x80 | 126]) + length.to_bytes(2, "big")
        else:
            header = bytes([0x80 | opcode, 0x80 | 127]) + length.to_bytes(8, "big")
        keystream = (mask * (length // 4 + 1))[:length]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(length, "big")
        self.sock.sendall(header + mask + masked)

    def close(self) -> None:
        self.sock.close()


def open_websockets(http_base: str, kind: str = "live") -> float:
    """``diabetes_open_websockets{kind=...}`` from the process's /metrics (open in DEBUG)."""
    with urllib.request.urlopen(f"{http_base}/metrics", timeout=TIMEOUT) as response:
        text = response.read().decode()
    match = re.search(rf'^diabetes_open_websockets\{{kind="{kind}"\}} (\S+)$', text, re.M)
    assert match, "the gauge is exported"
    return float(match.group(1))


def resident_kib(pid: int) -> int:
    """The process's resident memory (VmRSS) in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for process {pid}")


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
