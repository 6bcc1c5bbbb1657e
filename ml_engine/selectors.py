"""Reads of the database for the pages, the API and the commands (HackSoft style: selectors read,
services write). Every selector here returns a bounded answer: aggregates of fixed size, or at most
a stated number of rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate

from .models import Assessment, PredictionCount


def assessment_window_start(*, since: datetime, max_rows: int) -> tuple[datetime, bool]:
    """Where a window that starts at ``since`` really starts when it may hold at most ``max_rows``
    assessments: ``since``, or the time of the ``max_rows``-th newest assessment after it. The
    second value says whether the window was cut. One query on the ``created_at`` index."""
    nth = (
        Assessment.objects.filter(created_at__gte=since)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[max_rows - 1 : max_rows]
    )
    cut = next(iter(nth), None)
    return (cut, True) if cut is not None else (since, False)


def assessment_feature_counts(*, since: datetime, edges: Mapping[str, Sequence[float]]) -> dict[str, Any]:
    """For the assessments created at or after ``since``, counted in the database in one aggregate
    query: ``rows``, and per feature key of ``edges`` the ``missing`` (imputed) count and
    ``at_most[i]``, how many present values are <= ``edges[key][i]``.

    The answer has a fixed size (features x edges), whatever the number of rows."""
    aggregates: dict[str, Any] = {"rows": Count("pk")}
    for key, cuts in edges.items():
        # JSON null is an imputed value; on PostgreSQL null sorts below every number, so every
        # comparison is also restricted to present values.
        missing = Q(**{f"features__{key}": None}) | Q(**{f"features__{key}__isnull": True})
        aggregates[f"{key}__missing"] = Count("pk", filter=missing)
        for i, cut in enumerate(cuts):
            aggregates[f"{key}__le{i}"] = Count("pk", filter=~missing & Q(**{f"features__{key}__lte": float(cut)}))
    totals = Assessment.objects.filter(created_at__gte=since).aggregate(**aggregates)
    return {
        "rows": totals["rows"],
        "features": {
            key: {
                "missing": totals[f"{key}__missing"],
                "at_most": [totals[f"{key}__le{i}"] for i in range(len(cuts))],
            }
            for key, cuts in edges.items()
        },
    }


def prediction_counts_by_day(*, since: date) -> list[dict[str, Any]]:
    """Prediction counts from ``since`` (a UTC day) on, summed over model versions: one row per
    (day, interface, band, risk tenth), oldest day first. At most days x 4 interfaces x bands x 10."""
    rows = (
        PredictionCount.objects.filter(day__gte=since)
        .values("day", "interface", "band", "risk_tenth")
        .annotate(n=Sum("count"))
        .order_by("day", "interface", "band", "risk_tenth")
    )
    return [dict(row) for row in rows]


def prediction_counts_by_version(*, since: date) -> list[dict[str, Any]]:
    """Predictions from ``since`` on per (model version, interface): at most versions x 4 rows."""
    rows = (
        PredictionCount.objects.filter(day__gte=since)
        .values("model_version", "interface")
        .annotate(n=Sum("count"))
        .order_by("model_version", "interface")
    )
    return [dict(row) for row in rows]


def assessment_risks_by_day(*, since: datetime) -> list[dict[str, Any]]:
    """Stored assessments (form and REST) from ``since`` on, per UTC day and band: count and mean
    risk, counted in the database. At most days x bands rows."""
    rows = (
        Assessment.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", "band")
        .annotate(n=Count("pk"), mean_risk=Avg("risk"))
        .order_by("day", "band")
    )
    return [dict(row) for row in rows]


def assessment_reliability(*, since: datetime, sources: Sequence[str], bins: int = 10) -> list[dict[str, Any]]:
    """Assessments from ``since`` on with an outcome recorded by one of ``sources``, in ``bins``
    equal-width risk bins:
    per bin the count, the mean risk and the share that developed diabetes (``None`` for an empty
    bin). One aggregate query; the answer has ``bins`` rows whatever the number of outcomes."""
    aggregates: dict[str, Any] = {}
    for i in range(bins):
        low, high = i / bins, (i + 1) / bins
        inside = Q(risk__gte=low) & (Q(risk__lt=high) if i < bins - 1 else Q(risk__lte=high))
        aggregates[f"n{i}"] = Count("pk", filter=inside)
        aggregates[f"risk{i}"] = Avg("risk", filter=inside)
        aggregates[f"yes{i}"] = Count("pk", filter=inside & Q(outcome=1))
    rows = Assessment.objects.filter(created_at__gte=since, outcome_source__in=sources).exclude(outcome=None)
    totals = rows.aggregate(**aggregates)
    return [
        {
            "low": i / bins,
            "high": (i + 1) / bins,
            "n": totals[f"n{i}"],
            "mean_risk": totals[f"risk{i}"],
            "observed": totals[f"yes{i}"] / totals[f"n{i}"] if totals[f"n{i}"] else None,
        }
        for i in range(bins)
    ]
