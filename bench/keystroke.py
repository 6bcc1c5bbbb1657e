"""Keystroke-to-risk latency on one live socket.

    python -m bench.keystroke ws://127.0.0.1:8000/ws/predict/ [--keystrokes 2000] [--warmup 100]

Types measurements character by character (as the page does: one update per input event) and
waits for each prediction before the next keystroke, so every number is one full round trip:
frame out, validation, merge, inference, reply in. Starts nothing itself: point it at a running
server (`make run`). Prints p50/p90/p99/max in milliseconds over the keystrokes answered with a
prediction (a prefix out of range, like the "1" of "148", is answered with a field error instead).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import time
from urllib.parse import urlparse

from websockets.asyncio.client import connect

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


def keystrokes():
    """Endless (feature, value) updates; prefixes like "33." stay as they are on the page: 33."""
    while True:
        for key, text in TYPED:
            for end in range(1, len(text) + 1):
                yield key, float(text[:end].rstrip(".")) if "." in text[:end] else int(text[:end])
            yield key, None  # the field is cleared again, as when correcting a value


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def measure(url: str, count: int, warmup: int) -> list[float]:
    parsed = urlparse(url)
    origin = f"{'https' if parsed.scheme == 'wss' else 'http'}://{parsed.netloc}"
    latencies = []
    async with connect(url, origin=origin) as ws:
        for seq, (key, value) in enumerate(itertools.islice(keystrokes(), warmup + count)):
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "update", "seq": seq, "features": {key: value}}))
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("seq") == seq:
                    break
            elapsed = time.perf_counter() - started
            if reply["type"] == "error" and "errors" not in reply:
                raise SystemExit(f"unexpected reply to seq {seq}: {reply}")
            # A prefix out of range ("1" on the way to "148") is answered with a field error.
            if seq >= warmup and reply["type"] == "prediction":
                latencies.append(elapsed * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the live socket, e.g. ws://127.0.0.1:8000/ws/predict/")
    parser.add_argument("--keystrokes", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    args = parser.parse_args()
    latencies = sorted(asyncio.run(measure(args.url, args.keystrokes, args.warmup)))
    print(
        f"keystroke-to-risk on one socket, {len(latencies)} predictions: "
        f"p50 {percentile(latencies, 0.50):.3f} ms, p90 {percentile(latencies, 0.90):.3f} ms, "
        f"p99 {percentile(latencies, 0.99):.3f} ms, max {latencies[-1]:.3f} ms, "
        f"mean {statistics.fmean(latencies):.3f} ms"
    )


if __name__ == "__main__":
    main()
