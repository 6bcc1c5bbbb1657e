"""Benchmarks against real daphne processes: keystroke latency and its baselines, many typists,
idle sockets and kiosk fan-out across two processes."""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import resource
import time
import urllib.parse
from pathlib import Path

import websockets
from websockets.asyncio.client import ClientConnection

from tests.servers import DaphneServer, RedisServer, ServerEnv, daphne_servers

from . import floor, kiosk_attack
from .stats import NO_THROTTLES, PERSON, Summary, origin_of

# The sections here measure speed and memory with many sockets from one loopback address, so the
# per-address caps on sockets and answers are lifted (bench/kiosk_attack.py and bench/attacks.py
# measure them).
NO_SOCKET_CAP = {"WEBSOCKET_MAX_PER_ADDRESS": "100000", "WEBSOCKET_ANSWERS_PER_ADDRESS": "1000000"}


def server_env(work: Path, **extra: str) -> ServerEnv:
    # One database and model folder for every server the benchmarks start; no API throttling.
    env = ServerEnv(work, extra={**NO_THROTTLES, **NO_SOCKET_CAP, **extra})
    return env


async def _connect(url: str) -> ClientConnection:
    return await websockets.connect(url, origin=origin_of(url), max_size=2**20, ping_interval=None, open_timeout=60)


async def _answer(ws: ClientConnection, seq: int) -> dict:
    """Read until the prediction (or error) for ``seq`` or a later one arrives."""
    while True:
        message = json.loads(await ws.recv())
        if message.get("seq") is not None and message["seq"] >= seq:
            return message


# A fast typist: 20 keystrokes a second, a fifth of the flood limit's sustained rate, so the latency
# run never meets the rate limiter (bench/flood.py measures a flood on its own).
TYPING_RATE = 20.0


async def keystroke_and_ping(url: str, n: int = 400, rate: float = TYPING_RATE) -> tuple[list[float], list[float]]:
    """Keystroke-to-risk and the transport floor (WebSocket ping round trip), interleaved on one
    socket, paced at ``rate`` keystrokes a second.

    The ping goes half a period after its keystroke, so each probe finds the socket and both
    processes idle for the same time. A ping sent straight after the keystroke's reply would find
    them still running and its round trip would miss the wake-up from idle that every keystroke
    pays (README: "Live predictions (WebSocket)")."""
    keystroke, ping = [], []
    async with await _connect(url) as ws:
        next_at = time.perf_counter()
        for i in range(n):
            started_at = next_at
            next_at += 1 / rate
            features = {**PERSON, "glucose": 90 + i % 100}
            t = time.perf_counter_ns()
            await ws.send(json.dumps({"type": "update", "seq": i, "features": features}))
            message = await _answer(ws, i)
            keystroke.append((time.perf_counter_ns() - t) / 1000)
            assert message["type"] == "prediction", message  # a rate_limited warning would fail here
            await asyncio.sleep(max(0.0, started_at + 0.5 / rate - time.perf_counter()))
            t = time.perf_counter_ns()
            await (await ws.ping())
            ping.append((time.perf_counter_ns() - t) / 1000)
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return keystroke, ping


def http_round_trips(base: str, n: int = 200) -> tuple[list[float], list[float]]:
    """One POST /predict/ (form, with CSRF) and one POST /api/v1/predict per sample, keep-alive."""
    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/")
    response = conn.getresponse()
    page = response.read().decode()
    cookie = (response.getheader("Set-Cookie") or "").split(";", 1)[0]
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    if found is None:
        raise RuntimeError("the form page has no CSRF token")
    token = found.group(1)
    form, rest = [], []
    for i in range(n):
        body = urllib.parse.urlencode({**PERSON, "glucose": 90 + i % 100, "csrfmiddlewaretoken": token})
        t = time.perf_counter_ns()
        conn.request(
            "POST",
            "/predict/",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, "Referer": base + "/"},
        )
        response = conn.getresponse()
        response.read()
        form.append((time.perf_counter_ns() - t) / 1000)
        assert response.status == 200, response.status
        payload = json.dumps({"features": {**PERSON, "glucose": 90 + i % 100}})
        t = time.perf_counter_ns()
        conn.request("POST", "/api/v1/predict", body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        rest.append((time.perf_counter_ns() - t) / 1000)
        assert response.status == 200, response.status
    conn.close()
    return form, rest


async def typists(url: str, count: int, seconds: float = 5.0, rate: float = 10.0) -> dict:
    """``count`` sockets each sending ``rate`` updates a second; latency from each update to the
    first prediction that covers it; whether every socket's last update was answered."""
    latencies: list[float] = []
    last_answered = 0

    async def one(k: int) -> None:
        nonlocal last_answered
        async with await _connect(url) as ws:
            sent: dict[int, int] = {}
            done = asyncio.Event()
            total = int(seconds * rate)

            async def reader() -> None:
                answered = -1
                while answered < total - 1:
                    message = json.loads(await ws.recv())
                    seq = message.get("seq")
                    if message.get("type") != "prediction" or seq is None:
                        continue
                    now = time.perf_counter_ns()
                    for s in range(answered + 1, seq + 1):
                        if s in sent:
                            latencies.append((now - sent.pop(s)) / 1000)
                    answered = seq
                done.set()

            task = asyncio.create_task(reader())
            await asyncio.sleep(k * (1 / rate) / max(count, 1))  # spread the sockets over a period
            for i in range(total):
                sent[i] = time.perf_counter_ns()
                await ws.send(json.dumps({"type": "update", "seq": i, "features": {**PERSON, "glucose": 80 + i}}))
                await asyncio.sleep(1 / rate)
            try:
                await asyncio.wait_for(done.wait(), timeout=30)
                last_answered += 1
            finally:
                task.cancel()

    await asyncio.gather(*(one(k) for k in range(count)))
    return {"latencies": latencies, "last_answered": last_answered, "sockets": count}


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def raise_open_file_limit(target: int = 30000) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = min(target, hard) if hard != resource.RLIM_INFINITY else target
    if new > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


async def idle_sockets(url: str, pid: int, target: int) -> dict:
    """Open ``target`` sockets that stay idle; the server's memory before and after."""
    before = _rss_kib(pid)
    sockets: list[ClientConnection] = []
    started = time.monotonic()
    batch = 200
    for start in range(0, target, batch):
        opened = await asyncio.gather(
            *(_connect(url) for _ in range(min(batch, target - start))), return_exceptions=True
        )
        sockets.extend(ws for ws in opened if not isinstance(ws, BaseException))
        failures = [ws for ws in opened if isinstance(ws, BaseException)]
        if failures:
            break
    opened_in = time.monotonic() - started
    await asyncio.sleep(2)
    after = _rss_kib(pid)
    # Every idle socket still answers: probe a sample of them.
    probe = sockets[:: max(1, len(sockets) // 50)]
    answered = 0
    for ws in probe:
        await ws.send(json.dumps({"type": "update", "seq": 1, "features": PERSON}))
        if (await _answer(ws, 1))["type"] == "prediction":
            answered += 1
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {
        "target": target,
        "held": len(sockets),
        "rss_before_mib": before / 1024,
        "rss_after_mib": after / 1024,
        "kib_per_socket": (after - before) / max(1, len(sockets)),
        "opened_in_s": opened_in,
        "probed": len(probe),
        "probe_answered": answered,
    }


async def kiosk_fanout(live_url: str, kiosk_url: str, n: int = 60, warmup: int = 5) -> tuple[list[float], list[float]]:
    """A live socket on process A, a kiosk on process B: time from the update being sent (and from
    the prediction reaching the typist) to the kiosk event arriving."""
    from_send, from_prediction = [], []
    async with await _connect(kiosk_url) as kiosk, await _connect(live_url) as live:
        assert json.loads(await kiosk.recv())["type"] == "snapshot"
        await live.send(json.dumps({"type": "share", "board": "bench"}))
        assert json.loads(await live.recv())["type"] == "shared"
        for i in range(warmup + n):
            glucose = 60 + i
            t_send = time.perf_counter_ns()
            await live.send(json.dumps({"type": "update", "seq": i, "features": {**PERSON, "glucose": glucose}}))
            prediction = await _answer(live, i)
            t_pred = time.perf_counter_ns()
            while True:
                event = json.loads(await asyncio.wait_for(kiosk.recv(), timeout=10))
                if event.get("type") == "session" and event["risk"] == prediction["risk"]:
                    break
            t_kiosk = time.perf_counter_ns()
            if i >= warmup:  # the first publication also opens the publisher's Redis connections
                from_send.append((t_kiosk - t_send) / 1000)
                from_prediction.append((t_kiosk - t_pred) / 1000)
            await asyncio.sleep(0.25)  # one update a board tick: each one is sent
    return from_send, from_prediction


def keystroke_section(url: str) -> tuple[list[float], list[float]]:
    asyncio.run(keystroke_and_ping(url, n=50))  # warm-up
    return asyncio.run(keystroke_and_ping(url))


async def _one_reply(url: str) -> dict:
    async with await _connect(url) as ws:
        await ws.send(json.dumps({"type": "update", "seq": 0, "features": PERSON}))
        return await _answer(ws, 0)


def floor_section(env: ServerEnv, url: str) -> tuple[list[float], list[float]]:
    """Keystrokes and pings, measured as ``keystroke_section`` measures them, against the floor
    (bench/floor.py) under its own ``project.serve``, answering with a reply the server at ``url``
    gave."""
    reply = asyncio.run(_one_reply(url))
    env.extra[floor.REPLY_ENVIRONMENT] = json.dumps(reply)
    server = DaphneServer(env, application="bench.floor:application")
    try:
        server.start()
        return keystroke_section(server.ws + "/ws/predict/")
    finally:
        server.stop()
        del env.extra[floor.REPLY_ENVIRONMENT]


def run_all(work: Path) -> dict:
    results: dict = {}
    env = server_env(work)
    with daphne_servers(env, 1) as (server,):
        url = server.ws + "/ws/predict/"
        keystroke, ping = keystroke_section(url)
        floor_keystroke, floor_ping = floor_section(env, url)
        form, rest = http_round_trips(server.http)
        results["keystroke"] = [
            Summary.of("WebSocket ping round trip (transport floor)", ping),
            Summary.of("keystroke to risk, one WebSocket", keystroke),
            Summary.of("POST /api/v1/predict (keep-alive)", rest),
            Summary.of("POST /predict/ form round trip (keep-alive)", form),
        ]
        results["floor"] = [
            Summary.of("WebSocket ping round trip, the floor's socket", floor_ping),
            Summary.of("keystroke to reply, the floor (bench/floor.py)", floor_keystroke),
        ]
        results["typists"] = []
        for count in (1, 50, 200):
            outcome = asyncio.run(typists(url, count))
            results["typists"].append({**outcome, "summary": Summary.of(f"{count} typists", outcome["latencies"])})
    limit = raise_open_file_limit()
    with daphne_servers(server_env(work), 1) as (server,):
        target = 10000 if limit >= 10500 else max(100, limit - 500)
        results["idle"] = {
            **asyncio.run(idle_sockets(server.ws + "/ws/predict/", server.process.pid, target)),
            "open_file_limit": limit,
        }
    redis = RedisServer().start()
    try:
        env = server_env(work)
        env.redis_url = redis.url
        with daphne_servers(env, 2) as (a, b):
            from_send, from_prediction = asyncio.run(kiosk_fanout(a.ws + "/ws/predict/", b.ws + "/ws/kiosk/bench/"))
        results["fanout"] = [
            Summary.of("update sent (process A) to kiosk event (process B)", from_send),
            Summary.of("prediction at the typist to kiosk event", from_prediction),
        ]
        # Two fresh processes as deployed (throttles and socket caps at their defaults) for the
        # attack on a board.
        env = ServerEnv(work, redis_url=redis.url)
        with daphne_servers(env, 2) as (a, b):
            results["kiosk_attack"] = asyncio.run(kiosk_attack.measure(a, b))
    finally:
        redis.kill()
    return results


def main() -> None:
    """``python -m bench.live``: the keystroke section alone, printed (``make bench`` runs it all)."""
    import tempfile

    from .stats import fmt

    work = Path(tempfile.mkdtemp(prefix="bench-live-"))
    env = server_env(work)
    env.manage("migrate", "-v0")
    env.manage("train", "--repeats", "1")
    with daphne_servers(env, 1) as (server,):
        url = server.ws + "/ws/predict/"
        measured = {"this project": keystroke_section(url), "the floor (bench/floor.py)": floor_section(env, url)}
    for name, (keystroke, ping) in measured.items():
        for summary in (Summary.of("WebSocket ping round trip", ping), Summary.of("keystroke", keystroke)):
            print(f"{name}, {summary.name}: median {fmt(summary.median)} µs, p99 {fmt(summary.p99)} µs")
        ratio = Summary.of("", keystroke).median / Summary.of("", ping).median
        print(f"{name}: keystroke median / ping median: {ratio:.2f} at {TYPING_RATE:g} keystrokes a second")


if __name__ == "__main__":
    main()
