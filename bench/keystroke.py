"""Keystroke-to-risk latency on one live socket, beside the same socket's ping round trip.

    python -m bench.keystroke ws://127.0.0.1:8000/ws/predict/ [--keystrokes 400] [--warmup 50] [--rate 20]

Types measurements character by character (as the page does: one update per input event) at
``--rate`` keystrokes a second, like a fast typist, so the flood limit (100 frames a second) never
plays a part. Each keystroke waits for its reply, so every number is one full round trip: frame
out, validation, merge, inference, reply in. Half a keystroke period after each keystroke the
socket's own ping round trip is measured: the transport's floor on the same connection, after the
same idle time as the keystroke (a ping straight after the reply would skip the wake-up from idle
that every keystroke pays). Starts nothing itself: point it at
a running server (`make run`). Prints p50/p99 in milliseconds over the keystrokes answered with a
prediction (a prefix out of range, like the "1" of "148", is answered with a field error instead)
and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Iterator
from urllib.parse import urlparse

from websockets.asyncio.client import connect
from websockets.typing import Origin

# What a person types, field by field: each prefix is one keystroke.
TYPED = [
    ("pregnancies", "2"),
    ("glucose", "148"),
    ("blood_pressure", "72"),
    ("skin_thickness", "35"),
    ("insulin", "120"),
    ("bmi", "33.6"),
    ("diabetes_pedigree", "0.627"),
    ("age", "50"),
]
REPLY_TIMEOUT = 10.0  # seconds: a reply that does not come ends the run with a message


def keystrokes() -> Iterator[tuple[str, float | int | None]]:
    """Endless (feature, value) updates; prefixes like "33." stay as they are on the page: 33."""
    while True:
        for key, text in TYPED:
            for end in range(1, len(text) + 1):
                yield key, float(text[:end].rstrip(".")) if "." in text[:end] else int(text[:end])
            yield key, None  # the field is cleared again, as when correcting a value


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def measure(url: str, count: int, warmup: int, rate: float) -> tuple[list[float], list[float]]:
    """Keystroke and ping round trips in ms, ``rate`` keystrokes a second."""
    parsed = urlparse(url)
    origin = Origin(f"{'https' if parsed.scheme == 'wss' else 'http'}://{parsed.netloc}")
    latencies, pings = [], []
    async with connect(url, origin=origin, ping_interval=None) as ws:
        next_at = time.perf_counter()
        for seq, (key, value) in enumerate(itertools.islice(keystrokes(), warmup + count)):
            ping_at = next_at + 0.5 / rate
            next_at += 1 / rate
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "update", "seq": seq, "features": {key: value}}))
            while True:
                try:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), REPLY_TIMEOUT))
                except TimeoutError:
                    raise SystemExit(f"no reply to seq {seq} within {REPLY_TIMEOUT} s") from None
                if reply.get("seq") == seq:
                    break
                if reply.get("code") == "rate_limited":
                    raise SystemExit("the server says this client is too fast; lower --rate")
            elapsed = time.perf_counter() - started
            if reply["type"] == "error" and "errors" not in reply:
                raise SystemExit(f"unexpected reply to seq {seq}: {reply}")
            await asyncio.sleep(max(0.0, ping_at - time.perf_counter()))
            started = time.perf_counter()
            await asyncio.wait_for(await ws.ping(), REPLY_TIMEOUT)
            ping = time.perf_counter() - started
            # A prefix out of range ("1" on the way to "148") is answered with a field error.
            if seq >= warmup and reply["type"] == "prediction":
                latencies.append(elapsed * 1000)
                pings.append(ping * 1000)
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    return latencies, pings


def summary(name: str, values: list[float]) -> str:
    values = sorted(values)
    return (
        f"{name}: p50 {percentile(values, 0.50):.3f} ms, p90 {percentile(values, 0.90):.3f} ms, "
        f"p99 {percentile(values, 0.99):.3f} ms, max {values[-1]:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the live socket, e.g. ws://127.0.0.1:8000/ws/predict/")
    parser.add_argument("--keystrokes", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--rate", type=float, default=20.0, help="keystrokes a second (default 20)")
    args = parser.parse_args()
    latencies, pings = asyncio.run(measure(args.url, args.keystrokes, args.warmup, args.rate))
    print(f"{len(latencies)} predictions at {args.rate:g} keystrokes a second")
    print(summary("keystroke to risk", latencies))
    print(summary("ping round trip, same socket", pings))
    ratio = percentile(sorted(latencies), 0.5) / percentile(sorted(pings), 0.5)
    print(f"keystroke p50 / ping p50: {ratio:.2f}")


if __name__ == "__main__":
    main()
