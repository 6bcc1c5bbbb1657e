"""One address attacking a kiosk board while a real kiosk and a calm typist use it from others.

The attacker (ATTACKER, 127.0.0.1), in a process of its own so that its client work never slows
the measuring side: 2,000 kiosk handshakes, four at a time, holding what it gets, and 120 live
sessions sharing on the board and typing ten times a second, for ``seconds``. Beside it, a kiosk
on another address (127.0.0.2) counts its heartbeats and watches for a close, and a calm typist
(127.0.0.3) measures keystroke to risk, alone first and then during the attack. The open kiosk
sockets of both processes are sampled from their gauges. docs/kiosk.md, "Kiosks under load";
used by `make bench` (section 5) and tests/security/test_kiosk_attacks.py.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import statistics
import time
import urllib.request
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

from tests.servers import DaphneServer

from .stats import PERSON

ATTACKER, KIOSK, CALM = "127.0.0.1", "127.0.0.2", "127.0.0.3"
KIOSK_ATTEMPTS = 2000
FLOODERS = 4  # handshakes in flight at once: a refused one takes a round trip
PUBLISHERS = 120
WAIT = 60  # seconds: a bound on waiting, never a measurement
HIGH = {**PERSON, "glucose": 197, "bmi": 45, "age": 60}


async def _open(ws_base: str, http_base: str, path: str, source: str) -> ClientConnection:
    return await connect(
        f"{ws_base}{path}", origin=Origin(http_base), local_addr=(source, 0), open_timeout=WAIT, max_size=None
    )


def attack_in_a_process(servers: list[tuple[str, str]], seconds: float, results: Any) -> None:
    """The attack, from ATTACKER, spread over ``servers`` ((ws base, http base) pairs); puts how its
    kiosk handshakes went on ``results``."""
    results.put(asyncio.run(_attack(servers, seconds)))


async def _attack(servers: list[tuple[str, str]], seconds: float) -> dict[str, int]:
    attempts = {"kiosks": 0, "refused": 0, "accepted": 0}
    until = time.monotonic() + seconds

    async def open_on(i: int, path: str) -> ClientConnection:
        return await _open(*servers[i % len(servers)], path, ATTACKER)

    held: list[ClientConnection] = []
    pace = seconds / KIOSK_ATTEMPTS * FLOODERS  # each flooder's pause: all attempts within the time

    async def flood_kiosks() -> None:
        while attempts["kiosks"] < KIOSK_ATTEMPTS and time.monotonic() < until:
            attempts["kiosks"] += 1
            try:
                held.append(await open_on(attempts["kiosks"], "/ws/kiosk/lobby/"))
                attempts["accepted"] += 1
            except Exception:
                attempts["refused"] += 1
            await asyncio.sleep(max(0.0, min(pace, until - time.monotonic())))
        await asyncio.sleep(max(0.0, until - time.monotonic()))

    async def publisher(i: int) -> None:
        ws = await open_on(i, "/ws/predict/")
        try:
            await ws.send(json.dumps({"type": "share", "board": "lobby"}))
            seq = 0
            while time.monotonic() < until:
                seq += 1
                await ws.send(json.dumps({"type": "update", "seq": seq, "features": {**HIGH, "age": 20 + seq % 60}}))
                await asyncio.sleep(0.1)
        finally:
            await ws.close()

    floods = (flood_kiosks() for _ in range(FLOODERS))
    await asyncio.gather(*floods, *(publisher(i) for i in range(PUBLISHERS)), return_exceptions=True)
    await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
    return attempts


def _open_kiosks(http_base: str) -> float:
    with urllib.request.urlopen(f"{http_base}/metrics", timeout=WAIT) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('diabetes_open_websockets{kind="kiosk"}'):
                return float(line.split()[-1])
    return 0.0


async def _answer(ws: ClientConnection, wanted: str) -> dict:
    while (message := json.loads(await asyncio.wait_for(ws.recv(), WAIT)))["type"] != wanted:
        pass
    return message


async def _calm(server: DaphneServer, *, count: int | None = None, until: float | None = None) -> list[float]:
    """Keystroke-to-risk times (µs) of a calm typist, ten keystrokes a second."""
    ws = await _open(server.ws, server.http, "/ws/predict/", CALM)
    times: list[float] = []
    try:
        seq = 0
        while (count is not None and seq < count) or (until is not None and time.monotonic() < until):
            started = time.perf_counter_ns()
            await ws.send(json.dumps({"type": "update", "seq": seq, "features": {**PERSON, "age": 20 + seq % 60}}))
            await _answer(ws, "prediction")
            times.append((time.perf_counter_ns() - started) / 1000)
            seq += 1
            await asyncio.sleep(0.1)
    finally:
        await ws.close()
    return times


async def measure(a: DaphneServer, b: DaphneServer, seconds: float = 45) -> dict[str, Any]:
    """Run the attack on processes ``a`` and ``b`` (sharing one Redis) for ``seconds``; what the
    kiosk on B and the calm typist on A saw, and how the attacker's handshakes went."""
    alone = await _calm(a, count=100)
    kiosk = await _open(b.ws, b.http, "/ws/kiosk/lobby/", KIOSK)
    await _answer(kiosk, "snapshot")
    beats: list[float] = []
    closed: list[str] = []
    peaks: list[float] = []
    stop = asyncio.Event()

    async def watch_kiosk() -> None:
        try:
            while True:
                message = json.loads(await kiosk.recv())
                if message["type"] == "heartbeat":
                    beats.append(time.monotonic())
        except Exception as exc:  # a close or a failure: what must not happen
            if not stop.is_set():
                closed.append(repr(exc))

    async def sample_gauges() -> None:
        while not stop.is_set():
            gauges = await asyncio.gather(*(asyncio.to_thread(_open_kiosks, s.http) for s in (a, b)))
            peaks.append(sum(gauges))
            await asyncio.sleep(0.5)

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    attacker = context.Process(target=attack_in_a_process, args=([(s.ws, s.http) for s in (a, b)], seconds, results))
    started = time.monotonic()
    attacker.start()
    tasks = [asyncio.create_task(watch_kiosk()), asyncio.create_task(sample_gauges())]
    await asyncio.sleep(8)  # the attacker's process starts (a few seconds) and gets going
    during = await _calm(a, until=started + seconds - 2)
    attempts = await asyncio.to_thread(results.get, True, seconds + WAIT)
    await asyncio.to_thread(attacker.join, WAIT)
    stop.set()
    for task in tasks:
        task.cancel()
    await kiosk.close()
    gaps = [later - earlier for earlier, later in zip([started, *beats], beats, strict=False)]
    return {
        "seconds": seconds,
        "alone_us": alone,
        "during_us": during,
        "ratio": statistics.median(during) / statistics.median(alone),
        "heartbeats": len(beats),
        "longest_gap_s": max(gaps, default=float("inf")),
        "closed": closed,
        "attempts": attempts,
        "peak_kiosks": max(peaks, default=0.0),
    }
