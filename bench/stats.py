"""What every benchmark shares: the person its clients send, the origin they claim, the settings
without throttles, and the summaries (medians, p99 and ratios measured in the same run)."""

from __future__ import annotations

import statistics
import urllib.parse
from dataclasses import dataclass

from websockets.typing import Origin

# The person every benchmark client sends (glucose varied per request).
PERSON = {"pregnancies": 2, "glucose": 120, "blood_pressure": 70, "bmi": 31.5, "diabetes_pedigree": 0.4, "age": 40}


def origin_of(url: str) -> Origin:
    """The page origin a browser would send for ``url`` (scheme, host and port must all match)."""
    parts = urllib.parse.urlsplit(url)
    return Origin(f"{'https' if parts.scheme == 'wss' else 'http'}://{parts.netloc}")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass(frozen=True)
class Summary:
    name: str
    samples: int
    median: float
    p99: float
    unit: str = "µs"

    @classmethod
    def of(cls, name: str, values: list[float], unit: str = "µs") -> Summary:
        return cls(name, len(values), statistics.median(values), percentile(values, 99), unit)


def fmt(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


# Benchmarks measure serving, not the per-address throttles (every client here is 127.0.0.1);
# bench/attacks.py runs with the throttles on.
NO_THROTTLES = {"API_THROTTLE_ANON": "", "V2_THROTTLE_ANON": "", "FORM_THROTTLE": "", "WEBSOCKET_THROTTLE_CONNECT": ""}
