"""Prometheus metrics of the prediction service, exported at /metrics (one set per process)."""

from prometheus_client import Counter, Gauge, Histogram

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
for _interface in Interface:
    PREDICTIONS.labels(_interface)
    PREDICTION_LATENCY.labels(_interface)
    INVALID_INPUTS.labels(_interface)
for _kind in ("live", "kiosk"):
    OPEN_WEBSOCKETS.labels(_kind)


def set_active_version(version: str) -> None:
    ACTIVE_MODEL.clear()
    ACTIVE_MODEL.labels(version).set(1)
