"""Reads of the model registry and of the stored assessments: what every interface, command and
the training service asks about without changing anything. Writes and actions (predicting,
storing, recording outcomes, training, activating) are in ``ml_engine.services``."""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy
from django.db.models import Count
from django.utils import timezone

from .models import Assessment, ModelActivation, ModelVersion
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
