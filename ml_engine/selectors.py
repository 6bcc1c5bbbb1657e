"""Reads of the model registry and of the stored assessments for the pages, the API, the commands
and training (HackSoft style: selectors read; writes and actions such as predicting, storing,
recording outcomes, training and activating are in ``ml_engine.services``). Every selector returns
a bounded answer (aggregates of fixed size, or at most a stated number of rows), except the two
that are read whole on purpose: ``outcome_dataset`` (training rows) and ``model_version_list``
(the `models` command's list)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy
from django.db.models import Avg, Count, F, Max, Q, Sum
from django.db.models.functions import Abs, TruncDate
from django.utils import timezone

from .models import Assessment, ModelActivation, ModelVersion, PredictionCount, ServingPlan
from .registry import ServedModel, active_model
from .schema import FEATURES, Feature

# Only these outcomes feed `train --from-db` (README: "Access and roles").
TRUSTED_OUTCOME_SOURCES = (Assessment.OutcomeSource.API_KEY, Assessment.OutcomeSource.STAFF)
# Per-fold ECE, stored by versions trained before pooled calibration, is never shown: on 154-row
# folds it measured the fold size, not the model (README: "The model").
_FOLD_ECE = ("ece", "ece_std")


def _shown_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in metrics.items() if key not in _FOLD_ECE}


@dataclass(frozen=True, slots=True)
class FeatureRange:
    """A feature of the schema and the range of values the served model was trained on."""

    feature: Feature
    train_min: float
    train_max: float


@dataclass(frozen=True, slots=True)
class ModelOverview:
    """The served model with its training ranges, and the registry's recent history: what the
    model card page and the REST model endpoint show (README: "Model registry")."""

    served: ServedModel
    features: list[FeatureRange]
    versions: list[dict[str, Any]]
    activations: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        """The REST model endpoint's body: schema with training ranges, metrics, calibration,
        threshold, bands, versions and activations (README: "REST API")."""
        served, meta = self.served, self.served.metadata
        return {
            "name": served.name,
            "version": served.version,
            "algorithm": meta.get("algorithm", ""),
            "trained_at": meta.get("created"),
            "threshold": served.threshold,
            "bands": served.bands,
            "features": [
                {**row.feature.as_dict(), "train_min": row.train_min, "train_max": row.train_max}
                for row in self.features
            ],
            "metrics": _shown_metrics(meta.get("metrics", {})),
            # None for versions stored before pooled calibration existed (README: "The model").
            "calibration": meta.get("calibration"),
            "versions": self.versions,
            "activations": self.activations,
        }


def model_overview(*, history: int = 20) -> ModelOverview:
    """What the active model is, and the stored versions and activations (newest first, at most
    ``history`` of each). Raises ModelUnavailable when no model can serve."""
    served = active_model.get()
    ranges = served.training_ranges
    return ModelOverview(
        served=served,
        features=[
            FeatureRange(feature=feature, train_min=ranges[feature.key][0], train_max=ranges[feature.key][1])
            for feature in FEATURES
        ],
        versions=[
            {
                "version": record.version,
                "created": record.created_at,
                "algorithm": record.algorithm,
                "active": record.is_active,
                "activated_at": record.activated_at,
                "metrics": _shown_metrics(record.metrics),
            }
            for record in ModelVersion.objects.order_by("-created_at")[:history]
        ],
        activations=[
            {"version": activation.model_version.version, "activated_at": activation.activated_at}
            for activation in ModelActivation.objects.select_related("model_version").order_by("-activated_at")[
                :history
            ]
        ],
    )


def model_version_list() -> list[ModelVersion]:
    """Every stored version, oldest first (the `models` command's list)."""
    return list(ModelVersion.objects.order_by("created_at"))


def assessment_get(*, public_id: Any) -> Assessment:
    """The assessment with this public id (a UUID or its text). Raises Assessment.DoesNotExist for
    anything else, database keys included."""
    try:
        key = public_id if isinstance(public_id, uuid.UUID) else uuid.UUID(str(public_id))
    except (TypeError, ValueError):
        raise Assessment.DoesNotExist(public_id) from None
    return Assessment.objects.get(public_id=key)


def assessment_count(*, older_than_days: int | None = None) -> int:
    """How many assessments are stored; with ``older_than_days``, how many of them
    ``services.assessments_purge`` would delete now."""
    assessments = Assessment.objects.all()
    if older_than_days is not None:
        assessments = assessments.filter(created_at__lt=timezone.now() - timedelta(days=older_than_days))
    return assessments.count()


def outcome_dataset() -> tuple[numpy.ndarray, numpy.ndarray]:
    """Assessments whose outcome was recorded by an API key or staff, as training rows (NaN where a
    value was imputed). Outcomes of unknown origin (recorded before keys existed) are left out."""
    rows, outcomes = [], []
    trusted = Assessment.objects.exclude(outcome=None).filter(outcome_source__in=TRUSTED_OUTCOME_SOURCES)
    for features, outcome in trusted.order_by("pk").values_list("features", "outcome"):
        rows.append([math.nan if features.get(f.key) is None else float(features[f.key]) for f in FEATURES])
        assert outcome is not None  # excluded by the query
        outcomes.append(int(outcome))
    X = numpy.array(rows, dtype=float).reshape(-1, len(FEATURES))
    return X, numpy.array(outcomes, dtype=int)


def outcome_counts() -> dict[str, int]:
    """Recorded outcomes by who recorded them; only ``api_key`` and ``staff`` feed training."""
    counts = dict.fromkeys(Assessment.OutcomeSource.values, 0)
    rows = Assessment.objects.exclude(outcome=None).values_list("outcome_source").annotate(n=Count("pk"))
    for source, n in rows.order_by():
        key = source or Assessment.OutcomeSource.UNVERIFIED
        counts[key] = counts.get(key, 0) + n
    return counts


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


def serving_plan_in_force() -> dict[str, Any]:
    """The active version and the newest serving-plan row (README: "Model registry"): one row each.
    ``plan`` is None before any shadow or canary was ever set."""
    active = ModelVersion.objects.filter(is_active=True).values_list("version", flat=True).first()
    plan = (
        ServingPlan.objects.order_by("-pk")
        .values("changed_at", "changed_by", "shadow_version", "canary_version", "canary_share", "note")
        .first()
    )
    return {"active_version": active, "plan": plan}


def _band_of(field: str, bands: Mapping[str, Sequence[float]]) -> dict[str, Q]:
    """Per band name, the condition "``field`` falls in that band" as ``services.band_for`` reads
    it: the first band whose [low, high) holds the risk, and the top band for a risk of 1."""
    top = max(bands.items(), key=lambda item: item[1][1])[0]
    conditions: dict[str, Q] = {}
    earlier: Q | None = None
    for name, (low, high) in bands.items():
        inside = Q(**{f"{field}__gte": low, f"{field}__lt": high})
        if earlier is not None:
            inside &= ~earlier
        conditions[name] = inside
        earlier = inside if earlier is None else earlier | inside
    conditions[top] = conditions[top] | (~earlier if earlier is not None else Q())
    return conditions


def shadow_agreement(
    *, since: datetime, bands: Mapping[str, Sequence[float]], max_pairs: int = 10
) -> list[dict[str, Any]]:
    """Stored assessments from ``since`` on that the shadow also scored, per (answering version,
    shadow version): ``n``, mean and largest |risk - shadow_risk|, and ``flips``, how many the
    shadow would have put in another band than the stored one (the shadow's band read with
    ``bands``). One aggregate query in the database; at most ``max_pairs`` rows, the largest first."""
    same = Q()
    for name, inside in _band_of("shadow_risk", bands).items():
        same |= Q(band=name) & inside
    gap = Abs(F("risk") - F("shadow_risk"))
    rows = (
        Assessment.objects.filter(created_at__gte=since, shadow_risk__isnull=False)
        .values("model_version", "shadow_version")
        .annotate(n=Count("pk"), mean_gap=Avg(gap), max_gap=Max(gap), flips=Count("pk", filter=~same))
        .order_by("-n", "model_version", "shadow_version")[:max_pairs]
    )
    return [dict(row) for row in rows]
