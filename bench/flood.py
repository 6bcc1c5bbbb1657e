"""A calm socket's keystroke latency, alone and while another socket floods the same daphne process.

The calm socket sends 10 updates a second for about 5 s and times each one to its prediction;
the flood socket, in a separate process so it does not compete with the calm client for the GIL,
sends updates as fast as the connection takes them without reading the replies first, and opens
a new socket whenever the server closes one (the flood control closes it with 1008), so the flood
lasts the whole measurement.

    DJANGO_DEBUG=1 python -m bench.flood   # prints the figures of one run
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import threading
import time
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

from tests.servers import ServerEnv, daphne_servers

from .stats import NO_THROTTLES, PERSON, origin_of

CALM_RATE = 10.0  # updates a second
CALM_SECONDS = 5.0


async def calm(url: str, seconds: float = CALM_SECONDS, rate: float = CALM_RATE) -> list[float]:
    """Per-update latency (µs) from sending an update to the prediction for it."""
    import websockets

    latencies = []
    async with websockets.connect(url, origin=origin_of(url), ping_interval=None, open_timeout=60) as ws:
        for seq in range(int(seconds * rate)):
            started = time.perf_counter_ns()
            await ws.send(json.dumps({"type": "update", "seq": seq, "features": {**PERSON, "glucose": 80 + seq}}))
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), timeout=60))
                if message.get("seq") == seq:
                    break
            assert message["type"] == "prediction", message
            latencies.append((time.perf_counter_ns() - started) / 1000)
            await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter_ns() - started) / 1e9))
    return latencies


def _flood(url: str, seconds: float, started: EventType, out: multiprocessing.Queue) -> None:
    """Runs in its own process: flood until ``seconds`` have passed, reconnecting when closed."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import ClientConnection, connect

    # A socket the server closes mid-read is expected here; websockets would log it with a traceback.
    logging.getLogger("websockets").setLevel(logging.CRITICAL)

    sent = answered = connections = 0
    first_close: int | None = None
    deadline = time.monotonic() + seconds
    started.set()
    while time.monotonic() < deadline:
        with connect(url, origin=origin_of(url), open_timeout=60, max_size=None) as ws:
            connections += 1
            counts = {"answered": 0}

            def read(ws: ClientConnection = ws, counts: dict[str, int] = counts) -> None:
                try:
                    for text in ws:
                        if '"prediction"' in text:
                            counts["answered"] += 1
                except ConnectionClosed:
                    pass

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
            seq = 0
            try:
                while time.monotonic() < deadline:
                    ws.send(json.dumps({"type": "update", "seq": seq, "features": {"glucose": 60 + seq % 500}}))
                    seq += 1
            except ConnectionClosed:
                pass
            sent += seq
            code = ws.close_code
            if first_close is None and code is not None and code != 1000:
                first_close = code
        reader.join(10)
        answered += counts["answered"]
    out.put({"sent": sent, "answered": answered, "closed_code": first_close, "connections": connections})


def run(work: Path) -> dict:
    """Start one daphne process, measure the calm socket alone, then beside a flood."""
    env = ServerEnv(work, extra=dict(NO_THROTTLES))
    if not (work / "db.sqlite3").exists():
        env.manage("migrate", "-v0")
        env.manage("train", "--repeats", "1")
    with daphne_servers(env, 1) as (server,):
        url = server.ws + "/ws/predict/"
        asyncio.run(calm(url, seconds=1.0))  # warm-up: model loaded, code paths hot
        alone = asyncio.run(calm(url))
        context = multiprocessing.get_context("spawn")
        started, out = context.Event(), context.Queue()
        flooder = context.Process(target=_flood, args=(url, CALM_SECONDS + 2.0, started, out), daemon=True)
        flooder.start()
        try:
            started.wait(60)
            time.sleep(1.0)  # the flood is under way before the calm socket starts
            during = asyncio.run(calm(url))
            flood = out.get(timeout=120)
        finally:
            flooder.join(30)
            if flooder.is_alive():
                flooder.kill()
    return {
        "calm_latencies_us": during,
        "calm_alone_latencies_us": alone,
        "flood_sent": flood["sent"],
        "flood_answered": flood["answered"],
        "flood_closed_code": flood["closed_code"],
        "flood_connections": flood["connections"],
    }


if __name__ == "__main__":
    import os
    import tempfile

    from .stats import percentile

    os.environ.setdefault("DJANGO_DEBUG", "1")
    result = run(Path(tempfile.mkdtemp(prefix="bench-flood-")))
    for key in ("calm_alone_latencies_us", "calm_latencies_us"):
        values = result[key]
        print(
            f"{key}: n={len(values)} p50={percentile(values, 50) / 1000:.2f} ms "
            f"p95={percentile(values, 95) / 1000:.2f} ms p99={percentile(values, 99) / 1000:.2f} ms"
        )
    print({k: v for k, v in result.items() if not k.endswith("_us")})
