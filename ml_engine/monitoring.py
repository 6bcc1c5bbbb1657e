"""Live monitoring figures: input drift against the training data, served risks and bands per day,
predictions per interface, calibration on recorded outcomes, and the serving plan with the shadow's
agreement (README: "Monitoring").

The reads are in ``ml_engine.selectors`` (aggregates computed by the database, over bounded time
windows); this module turns them into typed figures. ``cached_report`` is what the page and the
``/metrics`` gauges use: the figures are recomputed at most every ``MONITOR_CACHE_SECONDS`` per
process, so neither a page view nor a scrape ever runs more than one round of bounded queries a
minute.

**Drift.** Each feature's population stability index (PSI) compares the share of values in each
bin of the training data with the share of stored assessments in the same bins:
``PSI = sum over bins of (actual - expected) x ln(actual / expected)``, with shares below 0.0001
raised to 0.0001 so an empty bin counts as a large difference rather than an infinite one. The
bins are the training deciles of the feature (values <= the 10th percentile, ..., > the 90th;
features with many equal values, such as pregnancies, get fewer bins where deciles coincide).
Imputed values are left out of the PSI and reported beside it as the missing rate. The reference
is the study's 768 women (``ml_engine/data/diabetes.csv``): every version is trained on them, and
versions trained with ``--from-db`` only add outcome rows that came from the monitored population
itself, which would hide the drift this measures.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache

import numpy
from django.conf import settings
from django.utils import timezone

from . import metrics, selectors
from .models import Interface
from .schema import FEATURES

# The usual reading of a PSI (e.g. Siddiqi, Credit Risk Scorecards, 2006).
PSI_STABLE = 0.1
PSI_MAJOR = 0.25
PSI_FLOOR = 0.0001
# Below this many present values a PSI is mostly sampling noise: shown, but not read.
MIN_ROWS_TO_READ = 100
# A window never aggregates more than this many of its newest assessments (one index lookup finds
# where that starts): the cost of a refresh is bounded whatever the traffic.
MAX_WINDOW_ROWS = 200_000
WINDOWS = (7, 30)
INTERFACES = tuple(Interface.values)  # the order of every chart and table
BAND_ORDER = ("low", "moderate", "high")
RELIABILITY_BINS = 10


@dataclass(frozen=True, slots=True)
class Reference:
    """Bins and shares of the training data, per feature key."""

    rows: int
    edges: dict[str, tuple[float, ...]]  # right-closed bins: <= e0, (e0, e1], ..., > e_last
    expected: dict[str, tuple[float, ...]]  # share of present values per bin (len(edges) + 1)
    missing: dict[str, float]  # share of rows where the value is missing


def reference_from_matrix(X: numpy.ndarray, *, bins: int = 10) -> Reference:
    """Quantile bins (``bins`` of them: deciles by default) of each column of ``X`` (columns in
    schema order, NaN = missing), and the share of the present values in each bin."""
    edges, expected, missing = {}, {}, {}
    for j, feature in enumerate(FEATURES):
        column = X[:, j]
        present = column[~numpy.isnan(column)]
        cuts: numpy.ndarray = (
            numpy.unique(numpy.quantile(present, numpy.arange(1, bins) / bins)) if len(present) else numpy.array([])
        )
        counts = numpy.bincount(numpy.searchsorted(cuts, present, side="left"), minlength=len(cuts) + 1)
        edges[feature.key] = tuple(float(c) for c in cuts)
        expected[feature.key] = tuple(float(c) for c in counts / max(len(present), 1))
        missing[feature.key] = float(numpy.isnan(column).mean()) if len(column) else 0.0
    return Reference(rows=len(X), edges=edges, expected=expected, missing=missing)


@lru_cache(maxsize=1)
def study_reference() -> Reference:
    """Deciles of the study's 768 women, read once per process."""
    from .training import load_dataset

    return reference_from_matrix(load_dataset().X)


def psi(expected: Sequence[float], actual: Sequence[float], *, floor: float = PSI_FLOOR) -> float:
    """Population stability index of ``actual`` shares against ``expected`` shares (same bins)."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, floor), max(a, floor)
        total += (a - e) * math.log(a / e)
    return total


def psi_reading(value: float | None, rows: int) -> str:
    """The plain-words reading of a PSI over ``rows`` present values."""
    if value is None or rows == 0:
        return "no data"
    if rows < MIN_ROWS_TO_READ:
        return f"too few to tell (under {MIN_ROWS_TO_READ})"
    if value < PSI_STABLE:
        return "stable"
    if value <= PSI_MAJOR:
        return "moderate shift"
    return "major shift"


@dataclass(frozen=True, slots=True)
class FeatureDrift:
    key: str
    label: str
    psi: float | None  # None without a present value in the window
    reading: str
    present: int
    missing_rate: float | None  # None without rows
    reference_missing_rate: float
    expected: tuple[float, ...]
    actual: tuple[float, ...]
    edges: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class WindowDrift:
    days: int
    since: datetime  # where the window starts (later than ``days`` ago when it was cut)
    rows: int
    cut: bool  # True when only the newest MAX_WINDOW_ROWS assessments were used
    features: list[FeatureDrift]


def drift(
    *, days: int, now: datetime, reference: Reference | None = None, max_rows: int = MAX_WINDOW_ROWS
) -> WindowDrift:
    """PSI and missing rate per feature for the assessments of the last ``days`` days."""
    reference = reference or study_reference()
    since, cut = selectors.assessment_window_start(since=now - timedelta(days=days), max_rows=max_rows)
    counts = selectors.assessment_feature_counts(since=since, edges=reference.edges)
    rows = counts["rows"]
    features = []
    for feature in FEATURES:
        got = counts["features"][feature.key]
        present = rows - got["missing"]
        at_most = got["at_most"]
        bins = [b - a for a, b in zip([0, *at_most], [*at_most, present], strict=True)]
        actual = tuple(n / present for n in bins) if present else tuple(0.0 for _ in bins)
        value = psi(reference.expected[feature.key], actual) if present else None
        features.append(
            FeatureDrift(
                key=feature.key,
                label=feature.label,
                psi=value,
                reading=psi_reading(value, present),
                present=present,
                missing_rate=got["missing"] / rows if rows else None,
                reference_missing_rate=reference.missing[feature.key],
                expected=reference.expected[feature.key],
                actual=actual,
                edges=reference.edges[feature.key],
            )
        )
    return WindowDrift(days=days, since=since, rows=rows, cut=cut, features=features)


@dataclass(frozen=True, slots=True)
class DayCounts:
    """Predictions of one UTC day, every interface."""

    day: date
    total: int
    bands: dict[str, int]
    interfaces: dict[str, int]


@dataclass(frozen=True, slots=True)
class Served:
    """Predictions per day (all interfaces, from the prediction counts) over ``days`` days."""

    days: int
    since: date
    by_day: list[DayCounts]
    interfaces: dict[str, int]  # totals over the window
    bands: dict[str, int]
    tenths: list[int]  # predictions per risk tenth (0-10 %, ..., 90-100 %)
    versions: list[tuple[str, str, int]]  # (model version, interface, predictions)

    @property
    def total(self) -> int:
        return sum(self.interfaces.values())


def served(*, days: int, now: datetime) -> Served:
    """Served risks and bands per day and predictions per interface over the last ``days`` UTC days
    (today included)."""
    since = (now - timedelta(days=days - 1)).date()
    by_day: dict[date, DayCounts] = {}
    interfaces = dict.fromkeys(INTERFACES, 0)
    bands = dict.fromkeys(BAND_ORDER, 0)
    tenths = [0] * 10
    for row in selectors.prediction_counts_by_day(since=since):
        entry = by_day.setdefault(
            row["day"], DayCounts(day=row["day"], total=0, bands=dict.fromkeys(BAND_ORDER, 0), interfaces={})
        )
        n = int(row["n"])
        entry.bands[row["band"]] = entry.bands.get(row["band"], 0) + n
        entry.interfaces[row["interface"]] = entry.interfaces.get(row["interface"], 0) + n
        interfaces[row["interface"]] = interfaces.get(row["interface"], 0) + n
        bands[row["band"]] = bands.get(row["band"], 0) + n
        tenths[min(max(int(row["risk_tenth"]), 0), 9)] += n
    days_list = [
        DayCounts(day=d.day, total=sum(d.bands.values()), bands=d.bands, interfaces=d.interfaces)
        for d in sorted(by_day.values(), key=lambda d: d.day)
    ]
    versions = [
        (row["model_version"], row["interface"], int(row["n"]))
        for row in selectors.prediction_counts_by_version(since=since)
    ]
    return Served(
        days=days,
        since=since,
        by_day=days_list,
        interfaces=interfaces,
        bands=bands,
        tenths=tenths,
        versions=versions,
    )


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    low: float
    high: float
    n: int
    mean_risk: float | None
    observed: float | None


@dataclass(frozen=True, slots=True)
class Calibration:
    """Observed outcomes against served risks, on assessments with a recorded outcome."""

    since: datetime
    bins: list[ReliabilityBin]

    @property
    def outcomes(self) -> int:
        return sum(b.n for b in self.bins)

    @property
    def ece(self) -> float | None:
        """Expected calibration error over these bins (count-weighted |observed - mean risk|)."""
        total = self.outcomes
        if not total:
            return None
        gaps = [
            b.n * abs(b.observed - b.mean_risk) for b in self.bins if b.observed is not None and b.mean_risk is not None
        ]
        return sum(gaps) / total


def calibration(*, now: datetime) -> Calibration:
    """Reliability of the served risks over the retention period, on the outcomes recorded with an
    API key or by staff (the ones `train --from-db` trusts; README: "Access and roles")."""
    since = now - timedelta(days=settings.ASSESSMENT_RETENTION_DAYS)
    rows = selectors.assessment_reliability(
        since=since, sources=selectors.TRUSTED_OUTCOME_SOURCES, bins=RELIABILITY_BINS
    )
    bins = [ReliabilityBin(**row) for row in rows]
    return Calibration(since=since, bins=bins)


@dataclass(frozen=True, slots=True)
class ServingPlanSummary:
    """The serving plan in force when the figures were computed (README: "Model registry")."""

    active_version: str | None
    shadow_version: str | None
    canary_version: str | None
    canary_share: float
    changed_at: datetime | None  # None before any plan was set
    changed_by: str
    note: str


def serving_plan_summary() -> ServingPlanSummary:
    """The active version, and the shadow and canary of the newest serving-plan row."""
    got = selectors.serving_plan_in_force()
    plan = got["plan"] or {}
    canary = plan.get("canary_version") or None
    return ServingPlanSummary(
        active_version=got["active_version"],
        shadow_version=plan.get("shadow_version") or None,
        canary_version=canary,
        canary_share=float(plan.get("canary_share") or 0.0) if canary else 0.0,
        changed_at=plan.get("changed_at"),
        changed_by=plan.get("changed_by", ""),
        note=plan.get("note", ""),
    )


@dataclass(frozen=True, slots=True)
class ShadowPair:
    """How a shadow version agreed with the version that answered, on the same assessments."""

    model_version: str
    shadow_version: str
    n: int
    mean_gap: float  # mean |risk - shadow risk|
    max_gap: float
    flips: int  # assessments the shadow would have put in another band

    @property
    def flip_share(self) -> float:
        return self.flips / self.n if self.n else 0.0


@dataclass(frozen=True, slots=True)
class ShadowWindow:
    days: int
    since: datetime  # the drift window's start (cut like it)
    pairs: list[ShadowPair]

    @property
    def scored(self) -> int:
        return sum(p.n for p in self.pairs)


def shadow_agreement(*, days: int, since: datetime, bands: dict[str, list[float]] | None = None) -> ShadowWindow:
    """Agreement of the shadow with the answer on the stored assessments from ``since`` on that
    carry a shadow risk, per (answering version, shadow version); bands are the served model's."""
    if bands is None:
        from .registry import active_model
        from .training import DEFAULT_BANDS

        current = active_model.current
        bands = current.bands if current is not None else DEFAULT_BANDS
    rows = selectors.shadow_agreement(since=since, bands=bands)
    pairs = [
        ShadowPair(
            model_version=row["model_version"],
            shadow_version=row["shadow_version"],
            n=int(row["n"]),
            mean_gap=float(row["mean_gap"]),
            max_gap=float(row["max_gap"]),
            flips=int(row["flips"]),
        )
        for row in rows
    ]
    return ShadowWindow(days=days, since=since, pairs=pairs)


@dataclass(frozen=True, slots=True)
class MonitorReport:
    computed_at: datetime
    reference_rows: int
    drift: list[WindowDrift]
    served: Served
    calibration: Calibration
    plan: ServingPlanSummary | None = None
    shadow: list[ShadowWindow] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


def monitor_report(*, now: datetime | None = None, reference: Reference | None = None) -> MonitorReport:
    """Every figure of the monitoring page, computed now (a few bounded aggregate queries)."""
    now = now or timezone.now()
    reference = reference or study_reference()
    windows = [drift(days=days, now=now, reference=reference) for days in WINDOWS]
    return MonitorReport(
        computed_at=now,
        reference_rows=reference.rows,
        drift=windows,
        served=served(days=max(WINDOWS), now=now),
        calibration=calibration(now=now),
        plan=serving_plan_summary(),
        shadow=[shadow_agreement(days=w.days, since=w.since) for w in windows],
    )


_cache_lock = threading.Lock()
_cached: tuple[float, MonitorReport] | None = None


def cached_report() -> MonitorReport:
    """``monitor_report()``, recomputed at most every ``MONITOR_CACHE_SECONDS`` in this process;
    concurrent callers wait for one computation rather than each running the queries."""
    global _cached
    ttl = float(settings.MONITOR_CACHE_SECONDS)
    with _cache_lock:
        if _cached is not None and time.monotonic() - _cached[0] < ttl:
            return _cached[1]
        report = monitor_report()
        _cached = (time.monotonic(), report)
        return report


def forget_cached_report() -> None:
    """Drop the cached figures (tests, and after a purge)."""
    global _cached
    with _cache_lock:
        _cached = None


def update_gauges(report: MonitorReport) -> None:
    """Copy the drift figures of ``report`` into the ``/metrics`` gauges."""
    for window in report.drift:
        label = f"{window.days}d"
        metrics.MONITORED_ASSESSMENTS.labels(label).set(window.rows)
        for figure in window.features:
            metrics.INPUT_PSI.labels(figure.key, label).set(math.nan if figure.psi is None else figure.psi)
            missing = math.nan if figure.missing_rate is None else figure.missing_rate
            metrics.INPUT_MISSING.labels(figure.key, label).set(missing)
    metrics.MONITOR_COMPUTED.set(report.computed_at.timestamp())
