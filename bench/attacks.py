"""Memory and latency under attack: each attack on one daphne process, beside a calm client.

Every attack gets a fresh daphne process (and a fresh redis-server as its channel layer and board
store), started with the open-file limit most systems give a service (1,024) unless the server
raises it itself. While the attack runs, the process's resident memory (``VmRSS``) is sampled
every 20 ms, its open file descriptors every 250 ms, and a calm client (another process, from
another loopback address, 127.0.0.2, so that per-address limits meant for the attacker do not hit
it) sends a REST prediction and a live-socket keystroke five times a second. The table reports the
peak rise of resident memory over the warmed-up process and the calm client's latency; the goal is
that no attack raises a daphne process by more than 100 MiB.

The attacks (README: "Benchmarks"), each bounded in count and time:

1. ~5 KB frames with 480 unknown keys, on 400 live sockets;
2. 700 live sessions on one kiosk board, then a kiosk connects;
3. 8 sockets that send for 10 s and never read (error-provoking updates; pings);
4. 10 concurrent REST bodies with 200,000 unknown keys each (over the body limit), then 80,000;
5. a 400 MiB request body streamed for at most 20 s; then 500 half-open HTTP connections for at
   most 20 s;
6. write paths back to back: the HTML form, V2 and REST batches of 1,000 rows, WebSocket connects;
7. requests that used to earn a 500: a lone-surrogate key, bad ``Inference-Header-Content-Length``
   values, an unknown WebSocket path and an invalid board name.

Loopback only.

    DJANGO_DEBUG=1 python -m bench.attacks   # this section alone (trains a model first)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import http.client
import json
import multiprocessing
import os
import re
import resource
import select
import socket
import statistics
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import TYPE_CHECKING

from websockets.typing import Origin

from tests.servers import DaphneServer, RedisServer, ServerEnv, daphne_servers

from .stats import PERSON, percentile

if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection as AsyncClientConnection

CALM_ADDRESS = "127.0.0.2"
SERVICE_OPEN_FILES = 1024  # the soft limit a service usually starts with
GOAL_MIB = 100
ATTACK_SECONDS = 45  # no attack runs longer than this


# -- measuring the server ---------------------------------------------------------------------------


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def _open_file_limit(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
    except (OSError, ValueError, IndexError):
        pass
    return None


class Sampler(threading.Thread):
    """Peak resident memory (every 20 ms) and open descriptors (every 250 ms) of one process."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss_kib = _status_kib(pid, "VmRSS")
        self.peak_fds = _open_fds(pid)
        self._halt = threading.Event()

    def run(self) -> None:
        tick = 0
        while not self._halt.wait(0.02):
            self.peak_rss_kib = max(self.peak_rss_kib, _status_kib(self.pid, "VmRSS"))
            tick += 1
            if tick % 12 == 0:
                self.peak_fds = max(self.peak_fds, _open_fds(self.pid))

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


# -- the calm client --------------------------------------------------------------------------------


def _calm(port: int, ready: EventType, stop: EventType, out: multiprocessing.Queue) -> None:
    """Runs in its own process: a REST prediction and a keystroke on a live socket, 5 a second each,
    from 127.0.0.2; latencies in µs, failures counted (a failed request reconnects)."""
    from websockets.sync.client import ClientConnection, connect

    def http_conn() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(CALM_ADDRESS, 0))

    def ws_conn() -> ClientConnection:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(CALM_ADDRESS, 0))
        return connect(
            f"ws://127.0.0.1:{port}/ws/predict/", sock=sock, origin=Origin(f"http://127.0.0.1:{port}"), open_timeout=10
        )

    rest: list[float] = []
    keystroke: list[float] = []
    failures: Counter[str] = Counter()
    conn: http.client.HTTPConnection | None = None
    ws: ClientConnection | None = None
    seq = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not stop.is_set():
        began = time.monotonic()
        body = json.dumps({"features": {**PERSON, "glucose": 90 + seq % 100}})
        try:
            conn = conn or http_conn()
            t = time.perf_counter_ns()
            conn.request("POST", "/api/v1/predict", body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                rest.append((time.perf_counter_ns() - t) / 1000)
            else:
                failures[f"REST {response.status}"] += 1
        except (OSError, http.client.HTTPException) as exc:
            failures[f"REST {type(exc).__name__}"] += 1
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            conn = None
        try:
            ws = ws or ws_conn()
            seq += 1
            t = time.perf_counter_ns()
            ws.send(json.dumps({"type": "update", "seq": seq, "features": {**PERSON, "glucose": 90 + seq % 100}}))
            while True:
                message = json.loads(ws.recv(timeout=10))
                if message.get("seq") is not None and message["seq"] >= seq:
                    break
            if message.get("type") == "prediction":
                keystroke.append((time.perf_counter_ns() - t) / 1000)
            else:
                failures[f"socket {message.get('type')}"] += 1
        except Exception as exc:  # closed, timed out or refused: count it, reconnect next time
            failures[f"socket {type(exc).__name__}"] += 1
            if ws is not None:
                with contextlib.suppress(Exception):
                    ws.close()
            ws = None
        if rest or keystroke:
            ready.set()
        stop.wait(max(0.0, 0.2 - (time.monotonic() - began)))
    if ws is not None:
        with contextlib.suppress(Exception):
            ws.close()
    out.put({"rest": rest, "keystroke": keystroke, "failures": dict(failures)})


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    for thread in threads:
        thread.join(timeout)


class CalmClient:
    def __init__(self, port: int):
        context = multiprocessing.get_context("spawn")
        self.ready, self.stop_event, self.out = context.Event(), context.Event(), context.Queue()
        self.proc = context.Process(target=_calm, args=(port, self.ready, self.stop_event, self.out), daemon=True)

    def start(self) -> None:
        self.proc.start()
        self.ready.wait(60)
        time.sleep(0.5)  # a few calm samples before the attack starts

    def stop(self) -> dict:
        self.stop_event.set()
        try:
            result = self.out.get(timeout=60)
        except Exception:
            result = {"rest": [], "keystroke": [], "failures": {"calm client": 1}}
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
        return result


# -- small raw-socket helpers (the attacks need what well-behaved clients never do) -------------------


def _ws_frame(text: str, opcode: int = 0x1) -> bytes:
    """A masked client frame (text unless ``opcode`` says otherwise: 0x9 is a ping)."""
    payload = text.encode()
    mask = os.urandom(4)
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 65536:
        head = bytes([first, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _ws_handshake(port: int, path: str, *, rcvbuf: int | None = None, timeout: float = 10) -> tuple[socket.socket, int]:
    """Open a WebSocket by hand; return the socket and the HTTP status of the handshake."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(timeout)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1:{port}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head and len(head) < 65536:
        chunk = sock.recv(1)  # byte by byte: nothing after the headers may be consumed here
        if not chunk:
            break
        head += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return sock, int(match.group(1)) if match else 0


async def _ws_connect(server: DaphneServer, path: str, source: str | None = None) -> AsyncClientConnection:
    """A socket from the attacker's address, or from ``source`` (another client)."""
    import websockets

    return await websockets.connect(
        server.ws + path,
        origin=server.http,
        max_size=2**20,
        ping_interval=None,
        open_timeout=20,
        local_addr=(source, 0) if source else None,
    )


def _http(
    port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None, timeout: float = 30
) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        return response.status, response.getheader("Content-Type") or "", data
    finally:
        conn.close()


def _open_live_gauge(port: int) -> float | None:
    with contextlib.suppress(Exception):
        status, _, data = _http(port, "GET", "/metrics", timeout=10)
        if status == 200:
            match = re.search(rb'diabetes_open_websockets\{kind="live"\} ([0-9.e+]+)', data)
            if match:
                return float(match.group(1))
    return None


# -- the attacks ----------------------------------------------------------------------------------


async def unknown_keys_frames(server: DaphneServer) -> list[str]:
    """1. A ~5 KB update with 480 unknown keys on each of 400 sockets; what comes back; leaks."""
    frame = json.dumps({"type": "update", "seq": 1, "features": {f"k{i:03d}": 1 for i in range(480)}})
    outcomes: Counter[str] = Counter()
    reply_sizes: list[int] = []

    async def one() -> None:
        try:
            ws = await _ws_connect(server, "/ws/predict/")
        except Exception as exc:
            outcomes[f"connect failed ({type(exc).__name__})"] += 1
            return
        try:
            await ws.send(frame)
            reply = await asyncio.wait_for(ws.recv(), timeout=10)
            reply_sizes.append(len(reply))
            outcomes[f"{json.loads(reply).get('type')} frame"] += 1
        except Exception:
            outcomes[f"closed {ws.close_code}"] += 1
        finally:
            await ws.close()

    for _ in range(400 // 50):
        await asyncio.gather(*(one() for _ in range(50)))
    await asyncio.sleep(1)
    gauge = await asyncio.to_thread(_open_live_gauge, server.port)
    return [
        f"{len(frame):,}-byte frame on 400 sockets: " + ", ".join(f"{v} {k}" for k, v in outcomes.most_common()),
        f"largest reply {max(reply_sizes):,} bytes" if reply_sizes else "no reply frame",
        f"open live sockets gauge afterwards: {gauge:g} (the calm client holds 1)"
        if gauge is not None
        else "open live sockets gauge: not readable",
    ]


async def crowded_board(server: DaphneServer, sessions: int = 700) -> list[str]:
    """2. ``sessions`` live sockets sharing on one board, then a kiosk connects (the sockets one
    address may open are capped: docs/kiosk.md, "Open sockets per address")."""
    board = "crowded"
    sockets: list[AsyncClientConnection] = []
    outcomes: Counter[str] = Counter()

    async def one(i: int) -> None:
        try:
            ws = await _ws_connect(server, "/ws/predict/")
        except Exception as exc:
            outcomes[f"connect failed ({type(exc).__name__})"] += 1
            return
        sockets.append(ws)
        try:
            await ws.send(json.dumps({"type": "share", "board": board}))
            await asyncio.wait_for(ws.recv(), timeout=20)  # {"type": "shared", ...}
            await ws.send(json.dumps({"type": "update", "seq": 1, "features": {**PERSON, "glucose": 60 + i % 140}}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), timeout=20))
            outcomes[f"{reply.get('type')}"] += 1
        except Exception as exc:
            outcomes[f"no prediction ({type(exc).__name__}, close {ws.close_code})"] += 1

    for start in range(0, sessions, 100):
        await asyncio.gather(*(one(i) for i in range(start, min(sessions, start + 100))))
    await asyncio.sleep(2)  # publications reach the board
    notes = [f"{sessions} sessions on board {board!r}: " + ", ".join(f"{v} {k}" for k, v in outcomes.most_common())]
    try:
        # The kiosk is the clinic's, on another address than the attacker's sessions.
        kiosk = await _ws_connect(server, f"/ws/kiosk/{board}/", source="127.0.0.4")
        try:
            first = await asyncio.wait_for(kiosk.recv(), timeout=15)
            message = json.loads(first)
            tiles = message.get("sessions")
            count = len(tiles) if isinstance(tiles, list) else "?"
            notes.append(f"kiosk got a {message.get('type')} of {len(first):,} bytes with {count} sessions")
        except Exception as exc:
            notes.append(f"kiosk got no snapshot ({type(exc).__name__}, close {kiosk.close_code})")
        finally:
            await kiosk.close()
    except Exception as exc:
        notes.append(f"kiosk could not connect ({type(exc).__name__})")
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return notes


def _send_never_read(port: int, seconds: float, rate: float | None, frame: bytes, result: dict) -> None:
    """Send ``frame`` ``rate`` times a second (or as fast as the server takes it) and never read."""
    sock, status = _ws_handshake(port, "/ws/predict/", rcvbuf=4096, timeout=1)
    sent, frames, closed_after = 0, 0, None
    started = time.monotonic()
    try:
        if status != 101:
            result["refused"] = result.get("refused", 0) + 1
            return
        while time.monotonic() - started < seconds and sent < NEVER_READ_BYTES:
            if rate:
                time.sleep(max(0.0, started + frames / rate - time.monotonic()))
            try:
                sock.sendall(frame)
                sent += len(frame)
                frames += 1
            except TimeoutError:
                continue  # the server stopped reading for now: keep the pressure on, never read
            except OSError:
                closed_after = time.monotonic() - started
                break
    finally:
        sock.close()
        result.setdefault("sent", []).append(sent)
        result.setdefault("closed_after", []).append(closed_after)


NEVER_READ_BYTES = 32 * 2**20  # per socket


async def send_never_read(
    server: DaphneServer, sockets: int = 8, seconds: float = 10.0, rate: float = 80.0
) -> list[str]:
    """3. Sockets that send and never read a byte: half send error-provoking updates under the flood
    limit, half send 125-byte pings (each answered by a pong) as fast as the server takes them."""
    update = _ws_frame(json.dumps({"type": "update", "seq": 1, "features": {f"k{i:03d}": 1 for i in range(200)}}))
    pings = b"".join(_ws_frame("p" * 125, opcode=0x9) for _ in range(64))
    kinds = {
        f"{len(update):,}-byte updates with 200 unknown keys, {rate:.0f} a second": (update, rate),
        "125-byte pings, as fast as the server takes them": (pings, None),
    }
    results: dict[str, dict] = {kind: {} for kind in kinds}
    threads = [
        threading.Thread(target=_send_never_read, args=(server.port, seconds, pace, frame, results[kind]), daemon=True)
        for kind, (frame, pace) in kinds.items()
        for _ in range(sockets // len(kinds))
    ]
    for thread in threads:
        thread.start()
    await asyncio.to_thread(_join_all, threads, seconds + 20)
    notes = []
    for kind, result in results.items():
        closed = [c for c in result.get("closed_after", []) if c is not None]
        notes.append(
            f"{sockets // len(kinds)} sockets sending {kind} for up to {seconds:.0f} s, never reading: "
            f"{sum(result.get('sent', [])) / 2**20:,.1f} MiB sent, {len(closed)} closed by the server"
            + (f" (after {min(closed):.1f}–{max(closed):.1f} s)" if closed else "")
        )
    return notes


def _post_unknown_keys(port: int, body: bytes, results: list) -> None:
    started = time.monotonic()
    try:
        status, _, data = _http(port, "POST", "/api/v1/predict", body, timeout=25)
        results.append((status, len(data), time.monotonic() - started))
    except (OSError, http.client.HTTPException) as exc:
        results.append((type(exc).__name__, 0, time.monotonic() - started))


async def rest_unknown_keys(
    server: DaphneServer, clients: int = 10, sizes: tuple[int, ...] = (200_000, 80_000)
) -> list[str]:
    """4. ``clients`` concurrent REST bodies with many unknown keys each: the issue's 200,000 (over
    the body limit now) and 80,000 (the most that fit under it, so they are parsed)."""
    notes: list[str] = []
    for keys in sizes:
        body = ("{" + '"features": {' + ",".join(f'"k{i}":1' for i in range(keys)) + "}}").encode()
        results: list = []
        threads = [
            threading.Thread(target=_post_unknown_keys, args=(server.port, body, results), daemon=True)
            for _ in range(clients)
        ]
        for thread in threads:
            thread.start()
        await asyncio.to_thread(_join_all, threads, 40)
        statuses = Counter(str(r[0]) for r in results)
        notes.append(
            f"{clients} × {len(body) / 2**20:.1f} MiB bodies with {keys:,} unknown keys: "
            + ", ".join(f"{v} × {k}" for k, v in statuses.most_common())
            + (f" of {clients}" if len(results) < clients else "")
            + f"; largest answer {max((r[1] for r in results), default=0):,} bytes;"
            + f" slowest {max((r[2] for r in results), default=0):.1f} s"
        )
    return notes


def _huge_body(port: int, total: int, seconds: float) -> list[str]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {total}\r\n\r\n".encode()
    )
    chunk = b" " * 2**20
    sent, answer = 0, b""
    started = time.monotonic()
    try:
        while sent < total and time.monotonic() - started < seconds:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                answer = sock.recv(65536)
                break
            try:
                sock.sendall(chunk)
                sent += len(chunk)
            except TimeoutError:
                continue
            except OSError:
                break
        if not answer:
            with contextlib.suppress(OSError):
                sock.settimeout(10)
                answer = sock.recv(65536)
    finally:
        sock.close()
    status = answer.split(b"\r\n", 1)[0].decode(errors="replace") if answer else "no answer"
    return [
        f"{total / 2**20:.0f} MiB body announced; {sent / 2**20:,.0f} MiB sent in "
        f"{time.monotonic() - started:.1f} s; server said: {status}"
    ]


async def huge_body(server: DaphneServer) -> list[str]:
    """5a. A 400 MiB body, streamed for at most 20 s."""
    return await asyncio.to_thread(_huge_body, server.port, 400 * 2**20, 20.0)


def _half_open(port: int, count: int, seconds: float) -> list[str]:
    sockets, refused = [], 0
    for _ in range(count):
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.sendall(f"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
            sockets.append(sock)
        except OSError:
            refused += 1
    started = time.monotonic()
    closed: set[int] = set()
    probe, all_closed_after = "", None
    while time.monotonic() - started < seconds and len(closed) < len(sockets):
        time.sleep(2)
        for i, sock in enumerate(sockets):
            if i in closed:
                continue
            try:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:  # the server answered (408) or hung up: either way it let go
                    sock.recv(4096)
                    closed.add(i)
                    continue
                sock.send(b"X")  # one more header byte: the request never ends
            except OSError:
                closed.add(i)
        if not probe:  # a newcomer, while the half-open connections are all there
            try:
                status, _, _ = _http(port, "GET", "/healthz", timeout=10)
                probe = f"a new connection while they were open: /healthz {status}"
            except OSError as exc:
                probe = f"a new connection while they were open failed ({type(exc).__name__})"
        if len(closed) == len(sockets):
            all_closed_after = time.monotonic() - started
    for sock in sockets:
        sock.close()
    return [
        f"{count} half-open requests (one header byte every 2 s, for up to {seconds:.0f} s): {len(sockets)} "
        f"connected, {refused} refused, {len(closed)} answered or closed by the server"
        + (f" (all within {all_closed_after:.0f} s)" if all_closed_after else ""),
        probe,
    ]


async def half_open(server: DaphneServer, count: int = 500, seconds: float = 20.0) -> list[str]:
    """5b. ``count`` HTTP connections that never finish their request headers."""
    return await asyncio.to_thread(_half_open, server.port, count, seconds)


def _post_back_to_back(
    port: int, path: str, body: bytes | str, headers: dict[str, str], *, seconds: float, most: int
) -> Counter:
    """POST ``body`` to ``path`` on one keep-alive connection until ``seconds`` or ``most`` requests;
    the count of each status (or of each exception, after which a new connection is opened)."""
    statuses: Counter = Counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.monotonic()
    while time.monotonic() - started < seconds and sum(statuses.values()) < most:
        try:
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            statuses[response.status] += 1
        except (OSError, http.client.HTTPException) as exc:
            statuses[type(exc).__name__] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()
    return statuses


def _counts(statuses: Counter) -> str:
    return ", ".join(f"{v} × {k}" for k, v in statuses.most_common())


def _write_paths(port: int, seconds: float) -> list[str]:
    notes = []
    # The HTML form, with its CSRF token, back to back on one connection.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/")
    response = conn.getresponse()
    page = response.read().decode()
    conn.close()
    cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    statuses: Counter = Counter()
    if token:
        form = urllib.parse.urlencode({**PERSON, "csrfmiddlewaretoken": token.group(1)})
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": cookie,
            "Referer": f"http://127.0.0.1:{port}/",
        }
        statuses = _post_back_to_back(port, "/predict/", form, headers, seconds=seconds, most=1000)
    notes.append(f"form: {sum(statuses.values())} POSTs in {seconds:.0f} s: {_counts(statuses)}")
    json_headers = {"Content-Type": "application/json"}
    # V2 batches of 1,000 rows.
    rows = [[2, 120, 70, 20, 80, 31.5, 0.4, 40]] * 1000
    body = json.dumps({"inputs": [{"name": "features", "datatype": "FP64", "shape": [1000, 8], "data": rows}]}).encode()
    statuses = _post_back_to_back(port, "/v2/models/diabetes/infer", body, json_headers, seconds=seconds, most=300)
    notes.append(f"V2: {sum(statuses.values())} requests of 1,000 rows in {seconds:.0f} s: {_counts(statuses)}")
    # REST batches of 1,000 instances: every one of them is stored as an assessment.
    body = json.dumps({"instances": [PERSON] * 1000}).encode()
    statuses = _post_back_to_back(port, "/api/v1/predict", body, json_headers, seconds=seconds, most=300)
    notes.append(
        f"REST: {sum(statuses.values())} requests of 1,000 instances in {seconds:.0f} s "
        f"({statuses[200] * 1000:,} rows answered and stored): {_counts(statuses)}"
    )
    return notes


async def write_paths(server: DaphneServer, seconds: float = 4.0) -> list[str]:
    """6. Every write path back to back from one address: form, V2 and REST batches, WebSocket connects."""
    notes = await asyncio.to_thread(_write_paths, server.port, seconds)
    outcomes: Counter = Counter()
    started = time.monotonic()
    while time.monotonic() - started < seconds and sum(outcomes.values()) < 1000:

        async def one() -> None:
            try:
                ws = await _ws_connect(server, "/ws/predict/")
                outcomes["accepted"] += 1
                await ws.close()
            except Exception as exc:
                outcomes[f"refused ({type(exc).__name__})"] += 1

        await asyncio.gather(*(one() for _ in range(20)))
    notes.append(
        f"WebSocket connects: {sum(outcomes.values())} in {seconds:.0f} s: "
        + ", ".join(f"{v} {k}" for k, v in outcomes.most_common())
    )
    return notes


def _error_triggers(port: int) -> list[str]:
    def shape(status: int, content_type: str, data: bytes) -> str:
        kind = "JSON" if "json" in content_type else (content_type.split(";")[0] or "no body")
        leak = " with a traceback" if b"Traceback" in data else ""
        leak += " naming REDIS_URL" if b"REDIS_URL" in data else ""
        return f"{status} {kind}{leak}"

    notes = []
    surrogate = b'{"features": {"\\ud800": 1}}'
    for label, path in (("predict", "/api/v1/predict"), ("outcome", "/api/v1/assessments/nonexistent/outcome")):
        try:
            notes.append(f"lone-surrogate key on {label}: {shape(*_http(port, 'POST', path, surrogate))}")
        except (OSError, http.client.HTTPException) as exc:
            notes.append(f"lone-surrogate key on {label}: {type(exc).__name__}")
    row = [2, 120, 70, 20, 80, 31.5, 0.4, 40]
    body = json.dumps({"inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 8], "data": row}]}).encode()
    for label, value in (("²", "\u00b2"), ("¹", "\u00b9"), ("5,000 digits", "9" * 5000)):
        try:
            answer = _http(port, "POST", "/v2/models/diabetes/infer", body, {"Inference-Header-Content-Length": value})
            notes.append(f"V2 Inference-Header-Content-Length {label}: {shape(*answer)}")
        except (OSError, http.client.HTTPException) as exc:
            notes.append(f"V2 Inference-Header-Content-Length {label}: {type(exc).__name__}")
    for label, path in (("unknown WebSocket path", "/ws/nowhere/"), ("invalid board name", "/ws/kiosk/bad.name/")):
        try:
            sock, status = _ws_handshake(port, path)
            sock.close()
            notes.append(f"{label}: handshake {status}")
        except OSError as exc:
            notes.append(f"{label}: {type(exc).__name__}")
    return notes


async def error_triggers(server: DaphneServer) -> list[str]:
    """7. Requests that used to earn a 500 (or a traceback): each one's status and shape."""
    notes = await asyncio.to_thread(_error_triggers, server.port)
    log = server.log()
    notes.append(f"tracebacks in the server log: {log.count('Traceback')}")
    return notes


@dataclass(frozen=True)
class Attack:
    number: str
    title: str
    run: Callable


async def no_attack(server: DaphneServer, seconds: float = 5.0) -> list[str]:
    """0. Nothing: the calm client alone, the baseline of every other row."""
    await asyncio.sleep(seconds)
    return [f"{seconds:.0f} s of the calm client alone"]


ATTACKS = (
    Attack("0", "none (the calm client alone)", no_attack),
    Attack("1", "5 KB frames with 480 unknown keys, 400 sockets", unknown_keys_frames),
    Attack("2", "700 sessions on one board, then a kiosk", crowded_board),
    Attack("3", "8 sockets that send and never read", send_never_read),
    Attack("4", "10 REST bodies with 200,000, then 80,000 unknown keys", rest_unknown_keys),
    Attack("5a", "a 400 MiB request body", huge_body),
    Attack("5b", "500 half-open HTTP connections", half_open),
    Attack("6", "write paths back to back (form, V2 and REST batches, connects)", write_paths),
    Attack("7", "requests that used to earn a 500", error_triggers),
)


@dataclass
class Outcome:
    attack: Attack
    baseline_mib: float
    peak_mib: float
    hwm_mib: float
    peak_fds: int
    open_file_limit: int | None
    seconds: float
    notes: list[str]
    calm: dict = field(default_factory=dict)
    alive: bool = True

    @property
    def rise_mib(self) -> float:
        return self.peak_mib - self.baseline_mib


@contextlib.contextmanager
def _service_open_file_limit() -> Iterator[None]:
    """Start daphne with the usual service limit of open files (it inherits the soft limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(SERVICE_OPEN_FILES, hard), hard))
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _warm_up(server: DaphneServer) -> None:
    for _ in range(5):
        _http(server.port, "POST", "/api/v1/predict", json.dumps({"features": PERSON}).encode())


def run_attack(attack: Attack, work: Path) -> Outcome:
    redis = RedisServer().start()
    try:
        env = ServerEnv(work, redis_url=redis.url)
        with _service_open_file_limit():
            servers = daphne_servers(env, 1)
            (server,) = servers.__enter__()
        try:
            _warm_up(server)
            pid = server.process.pid
            calm = CalmClient(server.port)
            calm.start()
            time.sleep(0.5)
            baseline = _status_kib(pid, "VmRSS")
            sampler = Sampler(pid)
            sampler.start()
            started = time.monotonic()
            try:
                notes = asyncio.run(asyncio.wait_for(attack.run(server), timeout=ATTACK_SECONDS))
            except TimeoutError:
                notes = [f"stopped after {ATTACK_SECONDS} s"]
            except Exception as exc:  # one failing attack must not cost the others
                notes = [f"the attack itself failed: {exc!r}"]
            seconds = time.monotonic() - started
            time.sleep(1.0)  # memory the attack left behind is part of its cost
            sampler.stop()
            calm_result = calm.stop()
            return Outcome(
                attack=attack,
                baseline_mib=baseline / 1024,
                peak_mib=sampler.peak_rss_kib / 1024,
                hwm_mib=_status_kib(pid, "VmHWM") / 1024,
                peak_fds=sampler.peak_fds,
                open_file_limit=_open_file_limit(pid),
                seconds=seconds,
                notes=notes,
                calm=calm_result,
                alive=server.process.poll() is None,
            )
        finally:
            server.process.kill()  # measured already; a graceful stop would only cost time
            servers.__exit__(None, None, None)
    finally:
        redis.kill()


def run(work: Path) -> list[Outcome]:
    env = ServerEnv(work)
    if not (work / "db.sqlite3").exists():
        env.manage("migrate", "-v0")
        env.manage("train", "--repeats", "1")
    outcomes = []
    for attack in ATTACKS:
        print(f"  attack {attack.number}: {attack.title}", flush=True)
        outcome = run_attack(attack, work)
        print(f"    +{outcome.rise_mib:.0f} MiB; " + "; ".join(outcome.notes), flush=True)
        outcomes.append(outcome)
    return outcomes


def calm_figures(values: list[float]) -> str:
    if not values:
        return "none answered"
    return f"{statistics.median(values) / 1000:.1f} / {percentile(values, 99) / 1000:.1f} ms"


if __name__ == "__main__":
    import tempfile

    from . import __main__ as bench_main

    bench_main.prepare(Path(tempfile.mkdtemp(prefix="bench-attacks-")))
    from django.conf import settings

    work = Path(settings.MODEL_DIR).parent
    for outcome in run(work):
        print(
            outcome.attack.number,
            f"rise {outcome.rise_mib:.0f} MiB (peak {outcome.peak_mib:.0f}, hwm {outcome.hwm_mib:.0f})",
            "rest",
            calm_figures(outcome.calm.get("rest", [])),
            "keystroke",
            calm_figures(outcome.calm.get("keystroke", [])),
            outcome.calm.get("failures"),
        )
