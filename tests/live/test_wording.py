"""The rounding rule every surface shares: a shown percent never belongs to another band than the
one shown beside it (live/wording.py), and the legend's words for each band."""

from __future__ import annotations

import random

import pytest

from live.wording import band_range_text, shown_percent, whole_percent

BANDS = {"low": [0.0, 0.2], "moderate": [0.2, 0.5], "high": [0.5, 1.0]}


def band_of(risk: float) -> str:
    return next(name for name, (low, high) in BANDS.items() if low <= risk < high or (high >= 1 and risk >= low))


def band_of_shown(percent: float) -> str:
    """The band a reader takes a shown percent for, from the legend's ranges."""
    return band_of(percent / 100)


@pytest.mark.parametrize(
    "risk, band, whole, tenth",
    [
        (0.4996, "moderate", 49, 49.9),  # would round to 50 / 50.0: "high"
        (0.496, "moderate", 49, 49.6),
        (0.1999, "low", 19, 19.9),
        (0.2, "moderate", 20, 20.0),
        (0.2004, "moderate", 20, 20.0),
        (0.5, "high", 50, 50.0),
        (0.0004, "low", 0, 0.0),
        (0.9996, "high", 100, 100.0),
        (0.345, "moderate", 35, 34.5),  # half up, as JavaScript rounds
    ],
)
def test_the_shown_percent_stays_in_its_band(risk, band, whole, tenth):
    assert whole_percent(risk, band, BANDS) == whole
    assert shown_percent(risk, band, BANDS, 1) == tenth


def test_no_risk_is_ever_shown_as_another_band():
    rng = random.Random(7)
    edges = [edge + d for edge in (0.2, 0.5) for d in (-1e-3, -5e-4, -1e-9, 0.0, 1e-9, 5e-4)]
    for risk in [rng.random() for _ in range(20_000)] + edges:
        band = band_of(risk)
        for decimals in (0, 1):
            shown = shown_percent(risk, band, BANDS, decimals)
            assert band_of_shown(shown) == band, (risk, band, decimals, shown)
            assert abs(shown - 100 * risk) < 10**-decimals  # less than one shown unit off


def test_the_legend_names_each_bands_whole_percents():
    assert band_range_text(0.0, 0.2) == "under 20%"
    assert band_range_text(0.2, 0.5) == "20–49%"
    assert band_range_text(0.5, 1.0) == "50% and over"
