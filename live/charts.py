"""Geometry of the monitoring page's plots, drawn as inline SVG by the templates (README:
"Monitoring"). Pure functions of ``ml_engine.monitoring`` figures: coordinates in a fixed viewBox,
and the words each plot's text alternative needs. No client-side plotting, no network."""

from __future__ import annotations

import itertools
from typing import Any

from ml_engine.monitoring import (
    BAND_ORDER,
    INTERFACES,
    MIN_ROWS_TO_READ,
    PSI_MAJOR,
    PSI_STABLE,
    Calibration,
    MonitorReport,
    Served,
    ShadowWindow,
    WindowDrift,
)

INTERFACE_NAMES = {"form": "HTML form", "rest": "REST API", "v2": "V2 (KServe)", "ws": "live page (WebSocket)"}
PSI_SCALE_MAX = 0.5  # bars are drawn up to this PSI; larger values are clipped and say so


def percent(value: float | None, digits: int = 1) -> str:
    return "no data" if value is None else f"{100 * value:.{digits}f}\u00a0%"  # never wrapped before the %


def _edge(value: float) -> str:
    return f"{value:.4g}"


def psi_bar(value: float | None, width: float = 100.0) -> dict[str, Any]:
    """A bar of length PSI / PSI_SCALE_MAX with the 0.1 and 0.25 marks."""
    clipped = value is not None and value > PSI_SCALE_MAX
    length = 0.0 if value is None else min(value, PSI_SCALE_MAX) / PSI_SCALE_MAX * width
    if value is None:
        level = "none"
    elif value < PSI_STABLE:
        level = "stable"
    elif value <= PSI_MAJOR:
        level = "moderate"
    else:
        level = "major"
    return {
        "width": round(length, 1),
        "stable_x": PSI_STABLE / PSI_SCALE_MAX * width,
        "major_x": PSI_MAJOR / PSI_SCALE_MAX * width,
        "clipped": clipped,
        "level": level,
    }


def drift_rows(windows: list[WindowDrift]) -> list[dict[str, Any]]:
    """One row per feature: PSI, reading and missing rate in each window, and the bins compared."""
    rows = []
    for i, first in enumerate(windows[0].features):
        cells = []
        for window in windows:
            figure = window.features[i]
            cells.append(
                {
                    "days": window.days,
                    "psi": None if figure.psi is None else f"{figure.psi:.3f}",
                    "reading": figure.reading,
                    "present": figure.present,
                    "missing": percent(figure.missing_rate),
                    "bar": psi_bar(figure.psi),
                }
            )
        edges = first.edges
        labels = (
            [f"≤ {_edge(edges[0])}"]
            + [f"{_edge(a)} to {_edge(b)}" for a, b in itertools.pairwise(edges)]
            + [f"> {_edge(edges[-1])}"]
            if edges
            else ["all values"]
        )
        bins = [
            {
                "label": label,
                "expected": percent(expected),
                "shares": [percent(w.features[i].actual[j]) if w.features[i].present else "no data" for w in windows],
            }
            for j, (label, expected) in enumerate(zip(labels, first.expected, strict=True))
        ]
        rows.append(
            {
                "key": first.key,
                "label": first.label,
                "cells": cells,
                "reference_missing": percent(first.reference_missing_rate),
                "bins": bins,
            }
        )
    return rows


def bands_by_day(served: Served, *, height: float = 120.0, width: float = 300.0) -> dict[str, Any]:
    """Stacked bars of predictions per day and band (bottom to top: low, moderate, high)."""
    days = served.by_day
    peak = max((d.total for d in days), default=0)
    slot = width / max(len(days), 1)
    bar = max(min(slot * 0.7, 40.0), 2.0)
    bars = []
    for i, d in enumerate(days):
        y = height
        segments = []
        for band in BAND_ORDER:
            n = d.bands.get(band, 0)
            h = height * n / peak if peak else 0.0
            y -= h
            if n:
                segments.append({"band": band, "y": round(y, 1), "height": round(h, 1), "n": n})
        bars.append(
            {
                "x": round(i * slot + (slot - bar) / 2, 1),
                "width": round(bar, 1),
                "segments": segments,
                "day": d.day,
                "total": d.total,
                "bands": [d.bands.get(band, 0) for band in BAND_ORDER],
                "shares": [percent(d.bands.get(band, 0) / d.total, 0) if d.total else "" for band in BAND_ORDER],
                "interfaces": [d.interfaces.get(name, 0) for name in INTERFACES],
                "label_x": round(i * slot + slot / 2, 1),
            }
        )
    # Day labels: the first, the last and a few between, so they never overlap.
    step = max(1, len(days) // 5)
    for i, b in enumerate(bars):
        b["show_label"] = i % step == 0 or i == len(bars) - 1
    return {"bars": bars, "peak": peak, "height": height, "width": width}


def tenths(served: Served, *, height: float = 120.0, width: float = 300.0) -> list[dict[str, Any]]:
    """Bars of predictions per risk tenth over the window, each with its count as text."""
    peak = max(served.tenths) or 1
    slot = width / 10
    return [
        {
            "label": f"{10 * i}–{10 * (i + 1)}\u00a0%",
            "n": n,
            "x": round(i * slot + slot * 0.1, 1),
            "width": round(slot * 0.8, 1),
            "height": round(height * n / peak, 1),
            "y": round(height - height * n / peak, 1),
            "text_x": round(i * slot + slot / 2, 1),
            "band": "low" if i < 2 else "moderate" if i < 5 else "high",
        }
        for i, n in enumerate(served.tenths)
    ]


def interfaces(served: Served, *, width: float = 100.0) -> list[dict[str, Any]]:
    peak = max(served.interfaces.values(), default=0) or 1
    total = served.total
    return [
        {
            "key": name,
            "name": INTERFACE_NAMES[name],
            "n": served.interfaces.get(name, 0),
            "share": percent(served.interfaces.get(name, 0) / total, 0) if total else "",
            "width": round(width * served.interfaces.get(name, 0) / peak, 1),
            "stored": name in ("form", "rest"),
        }
        for name in INTERFACES
    ]


def versions(served: Served) -> list[dict[str, Any]]:
    """Predictions per model version and interface: with a canary, the share each version answered."""
    table: dict[str, dict[str, int]] = {}
    for version, interface, n in served.versions:
        table.setdefault(version, dict.fromkeys(INTERFACES, 0))[interface] = n
    total = served.total
    rows = [
        {
            "version": version,
            "counts": [by_interface.get(name, 0) for name in INTERFACES],
            "total": sum(by_interface.values()),
            "share": percent(sum(by_interface.values()) / total) if total else "",
        }
        for version, by_interface in table.items()
    ]
    return sorted(rows, key=lambda row: -row["total"])


def reliability(calibration: Calibration, *, size: float = 200.0) -> dict[str, Any]:
    """Observed share against mean served risk per bin, with each bin's count as text."""
    points = [
        {
            "x": round(b.mean_risk * size, 1),
            "y": round((1 - b.observed) * size, 1),
            "n": b.n,
            "range": f"{100 * b.low:.0f}–{100 * b.high:.0f}\u00a0%",
        }
        for b in calibration.bins
        if b.n and b.mean_risk is not None and b.observed is not None
    ]
    return {
        "points": points,
        "polyline": " ".join(f"{p['x']},{p['y']}" for p in points),
        "rows": [
            {
                "range": f"{100 * b.low:.0f}–{100 * b.high:.0f}\u00a0%",
                "n": b.n,
                "mean_risk": percent(b.mean_risk),
                "observed": percent(b.observed),
            }
            for b in calibration.bins
        ],
        "ece": None if calibration.ece is None else f"{calibration.ece:.3f}",
    }


def shadow_rows(windows: list[ShadowWindow]) -> list[dict[str, Any]]:
    """One row per window and (answering version, shadow version): the agreement in words."""
    rows = []
    for window in windows:
        for pair in window.pairs:
            rows.append(
                {
                    "days": window.days,
                    "model_version": pair.model_version,
                    "shadow_version": pair.shadow_version,
                    "n": pair.n,
                    "mean_gap": percent(pair.mean_gap, 2),
                    "max_gap": percent(pair.max_gap, 2),
                    "flips": pair.flips,
                    "flip_share": percent(pair.flip_share),
                }
            )
    return rows


def page_context(report: MonitorReport) -> dict[str, Any]:
    """Everything the monitoring template draws."""
    return {
        "report": report,
        "windows": report.drift,
        "drift_rows": drift_rows(report.drift),
        "bands": bands_by_day(report.served),
        "tenths": tenths(report.served),
        "interfaces": interfaces(report.served),
        "versions": versions(report.served),
        "reliability": reliability(report.calibration),
        "plan": report.plan,
        "canary_share": percent(report.plan.canary_share, 0) if report.plan else "",
        "shadow_rows": shadow_rows(report.shadow),
        "psi_stable": PSI_STABLE,
        "psi_major": PSI_MAJOR,
        "min_rows": MIN_ROWS_TO_READ,
        "band_names": BAND_ORDER,
        "interface_names": [INTERFACE_NAMES[name] for name in INTERFACES],
    }
