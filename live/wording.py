"""Plain words for the person's pages: percentages, bands, drivers and warnings.

The live page (static/js/live.js) gets the same sentences from the markup this module fills, so a
warning reads the same while typing and on the result page. README: "The person's pages".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from ml_engine.schema import CLINICAL_CUTOFFS, FEATURES, Feature

# A driver smaller than this (in percentage points) "makes little difference".
SMALL_POINTS = 0.5


def percent(fraction: float) -> str:
    """0.3504 -> "35%"; 0.0612 -> "6.1%": whole percent above 10, one decimal below."""
    value = 100 * fraction
    return f"{value:.0f}%" if value >= 10 else f"{value:.1f}%"


def shown_percent(risk: float, band: str, bands: Mapping[str, Sequence[float]], decimals: int = 0) -> float:
    """The risk in percent as every surface shows it beside its band: rounded to ``decimals``,
    then kept inside the band's own range at that precision, so 0.4996 in "moderate" (20% to
    under 50%) shows 49.9 (or 49), never a 50.0 that reads as "high" (docs/kiosk.md, "What the
    board shows"). static/js/live.js applies the same rule."""
    scale = 10**decimals
    shown = math.floor(100 * risk * scale + 0.5)  # half up, as JavaScript's Math.round
    low, high = bands.get(band, (0.0, 1.0))
    floor, ceiling = _shown_range(low, high, scale)
    return min(max(shown, floor), ceiling) / scale


def _shown_range(low: float, high: float, scale: int) -> tuple[int, int]:
    """The smallest and largest values (percent x ``scale``) shown inside a band from ``low`` to
    under ``high``: the smallest at or above its floor, the largest below its (exclusive) top."""
    floor = math.ceil(round(100 * low * scale, 6))
    ceiling = 100 * scale if high >= 1 else math.ceil(round(100 * high * scale, 6)) - 1
    return floor, max(floor, ceiling)


def whole_percent(risk: float, band: str, bands: Mapping[str, Sequence[float]]) -> int:
    """``shown_percent`` in whole percent: what the kiosk shows."""
    return int(shown_percent(risk, band, bands))


def number(value: float | int | None) -> str:
    """A value as a person would type it: 148.0 -> "148", 33.6 -> "33.6"."""
    if value is None:
        return ""
    return f"{value:.6g}" if not float(value).is_integer() else str(int(value))


def unit_text(feature: Feature) -> str:
    return "" if feature.unit in ("count", "unitless") else feature.unit


def band_range_text(low: float, high: float) -> str:
    """A band's whole percents, as the kiosk legend says them: "under 20%", "20–49%", "50% and
    over": the same range ``shown_percent`` keeps a tile's percent in."""
    floor, ceiling = _shown_range(low, high, 1)
    if low <= 0:
        return f"under {ceiling + 1}%"
    if high >= 1:
        return f"{floor}% and over"
    return f"{floor}–{ceiling}%"


def bands_sentence(bands: Mapping[str, Sequence[float]]) -> str:
    """{"low": [0, .2], ...} -> "low: under 20%; moderate: 20% to 50%; high: 50% and over"."""
    parts = []
    for name, (low, high) in sorted(bands.items(), key=lambda item: item[1][0]):
        if low <= 0:
            parts.append(f"{name}: under {percent(high)}")
        elif high >= 1:
            parts.append(f"{name}: {percent(low)} and over")
        else:
            parts.append(f"{name}: {percent(low)} to under {percent(high)}")
    return "; ".join(parts)


def threshold_sentence(threshold: float, label: int) -> str:
    where = "at or above" if label else "below"
    return f"This is {where} {percent(threshold)}, the risk from which the model suggests a diabetes test."


def driver_phrase(label: str, points: float) -> str:
    """ "Plasma glucose adds about 14 points" (percentage points of risk against the average person)."""
    if abs(points) < SMALL_POINTS:
        return f"{label} makes little difference"
    size = f"{abs(points):.0f}" if abs(points) >= 1.5 else "1"
    noun = "point" if size == "1" else "points"
    return f"{label} {'adds' if points > 0 else 'takes off'} about {size} {noun}"


def warning_messages(training_ranges: Mapping[str, Sequence[float]]) -> dict[str, str]:
    """Every warning code a prediction can carry, in words a person can act on."""
    messages = {}
    for feature in FEATURES:
        low, high = training_ranges[feature.key]
        unit = unit_text(feature)
        seen = f"{number(low)} to {number(high)}{' ' + unit if unit and unit != 'years' else ''}"
        messages[f"extrapolated:{feature.key}"] = (
            f"{feature.label}: the model was trained on values from {seen} only and treats anything "
            f"outside that like the nearest value it saw, so this estimate means less."
        )
    messages["extrapolated:age"] = (
        f"Age: the model was trained on people aged {number(training_ranges['age'][0])} to "
        f"{number(training_ranges['age'][1])} only and treats an older or younger age like the nearest "
        "age it saw: this estimate does not mean that age lowers or raises your risk."
    )
    for cutoff in CLINICAL_CUTOFFS:
        messages[cutoff.code] = cutoff.message
    return messages


def clinical_codes() -> set[str]:
    return {cutoff.code for cutoff in CLINICAL_CUTOFFS}
