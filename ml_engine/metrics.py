"""Prometheus metrics of the prediction service, exported at /metrics (one set per process)."""

import bisect
import math
import threading
from collections.abc import Iterator

import numpy as np
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

from .models import Interface

PREDICTIONS = Counter(
    "diabetes_predictions_total",
    "Predictions made, by the interface that asked (a batch counts each row).",
    ["interface"],
)
PREDICTION_LATENCY = Histogram(
    "diabetes_prediction_seconds",
    "Time spent in the prediction service per call, by interface.",
    ["interface"],
    buckets=(0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
)
INVALID_INPUTS = Counter(
    "diabetes_invalid_inputs_total",
    "Inputs refused by validation, by interface.",
    ["interface"],
)
OPEN_WEBSOCKETS = Gauge(
    "diabetes_open_websockets",
    "WebSocket connections open on this process.",
    ["kind"],
)
WEBSOCKETS_REFUSED = Counter(
    "diabetes_websockets_refused_total",
    "WebSocket handshakes refused by a limit (live/sockets.py): the socket kind and the limit that was full.",
    ["kind", "limit"],
)
ACTIVE_MODEL = Gauge(
    "diabetes_active_model_info",
    "The model version this process serves (value 1 for the served version).",
    ["version"],
)

# Drift of the inputs (README: "Monitoring"): the same figures as /monitor/, from the database, so
# every process reports the same values (do not sum them across processes). Recomputed at most once
# per MONITOR_CACHE_SECONDS; labels are bounded: 8 features x 2 windows.
INPUT_PSI = Gauge(
    "diabetes_input_psi",
    "Population stability index of a feature in stored assessments against the training deciles (NaN: no data).",
    ["feature", "window"],
)
INPUT_MISSING = Gauge(
    "diabetes_input_missing_ratio",
    "Share of stored assessments in the window where the feature was missing and imputed (NaN: no data).",
    ["feature", "window"],
)
MONITORED_ASSESSMENTS = Gauge(
    "diabetes_monitored_assessments",
    "Stored assessments the drift figures of the window rest on.",
    ["window"],
)
MONITOR_COMPUTED = Gauge(
    "diabetes_monitoring_computed_timestamp_seconds",
    "When the drift figures were computed (Unix time): how old the drift gauges are.",
)

# Every interface's series exists from the start, at zero, so a rate never starts from "absent".
# The prediction service counts through these children: ``labels()`` takes a lock and checks its
# arguments on every call, a measurable part of a live keystroke's cost.
PREDICTIONS_BY_INTERFACE = {i: PREDICTIONS.labels(i) for i in Interface}
LATENCY_BY_INTERFACE = {i: PREDICTION_LATENCY.labels(i) for i in Interface}
for _interface in Interface:
    INVALID_INPUTS.labels(_interface)
for _kind in ("live", "kiosk"):
    OPEN_WEBSOCKETS.labels(_kind)
    for _limit in ("address", "board", "process", "handshakes"):
        WEBSOCKETS_REFUSED.labels(_kind, _limit)


def set_active_version(version: str) -> None:
    ACTIVE_MODEL.clear()
    ACTIVE_MODEL.labels(version).set(1)


# README: "Model registry" (shadow and canary). Bounded by construction: four interfaces, two
# roles, and numbers about how two versions agree -- never an input, never a person.
INTERFACE_NAMES = tuple(str(interface.value) for interface in Interface)


class ShadowAgreement:
    """How the shadow version agrees with the version that answered, per interface: a histogram
    of |served risk - shadow risk| and a counter of band flips. A collector of its own so a batch
    is counted in a few array operations, not one observation per row."""

    BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bounds = list(self.BOUNDS)
        self._edges = np.array(self.BOUNDS)
        self._counts = {interface: [0] * (len(self.BOUNDS) + 1) for interface in INTERFACE_NAMES}
        self._sums = dict.fromkeys(INTERFACE_NAMES, 0.0)
        self._flips = dict.fromkeys(INTERFACE_NAMES, 0)
        self._skipped = dict.fromkeys(INTERFACE_NAMES, 0)

    def observe_one(self, interface: str, difference: float, flipped: bool) -> None:
        slot = bisect.bisect_left(self._bounds, difference)
        with self._lock:
            self._counts[interface][slot] += 1
            self._sums[interface] += difference
            self._flips[interface] += flipped

    def observe_many(self, interface: str, differences: np.ndarray, flips: int) -> None:
        slots = np.bincount(
            np.searchsorted(self._edges, differences, side="left"),
            minlength=len(self._bounds) + 1,
        )
        total = float(differences.sum())
        with self._lock:
            counts = self._counts[interface]
            for slot, n in enumerate(slots.tolist()):
                counts[slot] += n
            self._sums[interface] += total
            self._flips[interface] += flips

    def skip(self, interface: str, rows: int = 1) -> None:
        """Predictions the shadow did not score: it has no fast path (README: "Model registry")."""
        with self._lock:
            self._skipped[interface] += rows

    def collect(self) -> Iterator[Metric]:
        difference = HistogramMetricFamily(
            "diabetes_shadow_risk_difference",
            "|served risk - shadow risk| for each prediction the shadow version scored, by interface.",
            labels=["interface"],
        )
        flips = CounterMetricFamily(
            "diabetes_shadow_band_flips",
            "Predictions whose band the shadow version would have given differently, by interface.",
            labels=["interface"],
        )
        skipped = CounterMetricFamily(
            "diabetes_shadow_skipped",
            "Predictions the shadow version did not score because it has no fast path, by interface.",
            labels=["interface"],
        )
        with self._lock:
            for interface in INTERFACE_NAMES:
                cumulative, buckets = 0, []
                for bound, n in zip([*self._bounds, math.inf], self._counts[interface], strict=True):
                    cumulative += n
                    buckets.append(("+Inf" if bound == math.inf else repr(bound), cumulative))
                difference.add_metric([interface], buckets, self._sums[interface])
                flips.add_metric([interface], self._flips[interface])
                skipped.add_metric([interface], self._skipped[interface])
        yield difference
        yield flips
        yield skipped

    def reset(self) -> None:
        """Back to zero (tests)."""
        with self._lock:
            self._counts = {interface: [0] * (len(self.BOUNDS) + 1) for interface in INTERFACE_NAMES}
            self._sums = dict.fromkeys(INTERFACE_NAMES, 0.0)
            self._flips = dict.fromkeys(INTERFACE_NAMES, 0)
            self._skipped = dict.fromkeys(INTERFACE_NAMES, 0)


SHADOW = ShadowAgreement()
REGISTRY.register(SHADOW)

CANARY_PREDICTIONS = Counter(
    "diabetes_canary_predictions_total",
    "Predictions answered by the canary version (a batch counts each row), by interface.",
    ["interface"],
)
SERVING_PLAN = Gauge(
    "diabetes_serving_plan_info",
    "The shadow and canary versions this process has loaded (value 1), by role.",
    ["role", "version"],
)
CANARY_SHARE = Gauge(
    "diabetes_canary_share",
    "The share of new live sessions and REST/V2 requests the canary answers (0 without a canary).",
)
CANARY_BY_INTERFACE = {i: CANARY_PREDICTIONS.labels(i) for i in Interface}  # as PREDICTIONS_BY_INTERFACE


def set_serving_plan(*, shadow: str | None, canary: str | None, share: float) -> None:
    SERVING_PLAN.clear()
    if shadow:
        SERVING_PLAN.labels("shadow", shadow).set(1)
    if canary:
        SERVING_PLAN.labels("canary", canary).set(1)
    CANARY_SHARE.set(share if canary else 0.0)
