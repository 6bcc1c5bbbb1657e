"""The business logic of the predictor: every interface (form, REST, V2, WebSocket, commands)
calls these functions and only translates their input and output."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy
import sklearn
from django.db import transaction
from django.utils import timezone

from . import metrics
from .inference import additive_terms, feature_groups
from .models import Assessment, ModelActivation, ModelVersion
from .registry import ArtifactError, ServedModel, active_model, load_version, write_artifact
from .schema import CLINICAL_CUTOFFS, FEATURE_KEYS, FEATURES, FeatureValidationError, clean_features
from .training import Dataset, load_dataset, train, with_extra_rows

logger = logging.getLogger(__name__)

MAX_INSTANCES = 1000


@dataclass(frozen=True, slots=True)
class Prediction:
    risk: float
    band: str
    label: int
    threshold: float
    contributions: dict[str, float]
    points: dict[str, float]
    imputed: list[str]
    warnings: list[str]
    model_name: str
    model_version: str
    features: dict[str, float | None] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "risk": self.risk,
            "band": self.band,
            "label": self.label,
            "threshold": self.threshold,
            "contributions": self.contributions,
            "points": self.points,
            "imputed": self.imputed,
            "warnings": self.warnings,
            "model": {"name": self.model_name, "version": self.model_version},
        }


def band_for(risk: float, bands: Mapping[str, Sequence[float]]) -> str:
    for name, (low, high) in bands.items():
        if low <= risk < high:
            return name
    return max(bands.items(), key=lambda item: item[1][1])[0]  # risk == 1.0 falls in the top band


def _sigmoid(logit: float) -> float:
    return 1.0 / (1.0 + math.exp(-logit)) if logit >= 0 else math.exp(logit) / (1.0 + math.exp(logit))


def risk_points(*, baseline_logit: float, contributions: Mapping[str, float]) -> dict[str, float]:
    """Each feature's effect in percentage points of risk: the risk of the baseline person (the
    study's average) with only that one value changed, minus the baseline risk. Exact for the
    additive model; the points need not add up to the total (README: "REST API")."""
    base = _sigmoid(baseline_logit)
    return {key: 100.0 * (_sigmoid(baseline_logit + c) - base) for key, c in contributions.items()}


def clinical_warnings(cleaned: Mapping[str, float | None]) -> list[str]:
    """Codes of the values that need a clinician on their own (cut-offs: ml_engine/schema.py)."""
    return [cutoff.code for cutoff in CLINICAL_CUTOFFS if cutoff.applies(cleaned.get(cutoff.key))]


def _explain(served: ServedModel, cleaned: dict[str, float | None], risk: float, contributions) -> Prediction:
    ranges = served.training_ranges
    warnings = [
        f"extrapolated:{key}"
        for key, value in cleaned.items()
        if value is not None and not ranges[key][0] <= value <= ranges[key][1]
    ] + clinical_warnings(cleaned)
    by_key = {key: float(c) for key, c in zip(FEATURE_KEYS, contributions, strict=True)}
    return Prediction(
        risk=risk,
        band=band_for(risk, served.bands),
        label=int(risk >= served.threshold),
        threshold=served.threshold,
        contributions=by_key,
        points=risk_points(baseline_logit=served.metadata["baseline"]["logit"], contributions=by_key),
        imputed=[key for key, value in cleaned.items() if value is None],
        warnings=warnings,
        model_name=served.name,
        model_version=served.version,
        features=cleaned,
    )


def predict(*, features: Mapping[str, Any], interface: str = "rest") -> Prediction:
    """Risk for one person. Raises FeatureValidationError (per-field messages) on bad input and
    ModelUnavailable when no model can serve."""
    started = time.perf_counter()
    try:
        cleaned = clean_features(features)
    except FeatureValidationError:
        metrics.INVALID_INPUTS.labels(interface).inc()
        raise
    served = active_model.get()
    risk, contributions = served.model.predict_one([cleaned[key] for key in FEATURE_KEYS])
    prediction = _explain(served, cleaned, risk, contributions)
    metrics.PREDICTION_LATENCY.labels(interface).observe(time.perf_counter() - started)
    metrics.PREDICTIONS.labels(interface).inc()
    return prediction


def predict_many(*, instances: Sequence[Any], interface: str = "rest") -> list[Prediction]:
    """Risks for 1 to MAX_INSTANCES people in one vectorised model call, in input order.
    Errors name the instance: ``instances[3].glucose``."""
    started = time.perf_counter()
    if not isinstance(instances, Sequence) or isinstance(instances, str | bytes) or not instances:
        raise FeatureValidationError({"instances": [f"Give a list of 1 to {MAX_INSTANCES} feature objects."]})
    if len(instances) > MAX_INSTANCES:
        raise FeatureValidationError(
            {"instances": [f"At most {MAX_INSTANCES} instances per request; got {len(instances)}."]}
        )
    cleaned_rows, errors = [], {}
    for i, raw in enumerate(instances):
        try:
            cleaned_rows.append(clean_features(raw))
        except FeatureValidationError as exc:
            for key, messages in exc.errors.items():
                errors[f"instances[{i}].{key}"] = messages
    if errors:
        metrics.INVALID_INPUTS.labels(interface).inc()
        raise FeatureValidationError(errors)
    served = active_model.get()
    X = numpy.array([[math.nan if row[k] is None else row[k] for k in FEATURE_KEYS] for row in cleaned_rows])
    risks, contributions = served.model.predict_matrix(X)
    predictions = [
        _explain(served, row, float(risk), contrib)
        for row, risk, contrib in zip(cleaned_rows, risks, contributions, strict=True)
    ]
    metrics.PREDICTION_LATENCY.labels(interface).observe(time.perf_counter() - started)
    metrics.PREDICTIONS.labels(interface).inc(len(predictions))
    return predictions


def model_overview(*, history: int = 20) -> dict[str, Any]:
    """What the active model is: schema with training ranges, metrics, threshold, bands, and the
    stored versions and activations (newest first, at most ``history`` of each). Raises
    ModelUnavailable when no model can serve."""
    served = active_model.get()
    ranges = served.training_ranges
    meta = served.metadata
    return {
        "name": served.name,
        "version": served.version,
        "algorithm": meta.get("algorithm", ""),
        "trained_at": meta.get("created"),
        "threshold": served.threshold,
        "bands": served.bands,
        "features": [
            {**feature.as_dict(), "train_min": ranges[feature.key][0], "train_max": ranges[feature.key][1]}
            for feature in FEATURES
        ],
        "metrics": meta.get("metrics", {}),
        "versions": [
            {
                "version": record.version,
                "created": record.created_at,
                "algorithm": record.algorithm,
                "active": record.is_active,
                "activated_at": record.activated_at,
                "metrics": record.metrics,
            }
            for record in ModelVersion.objects.order_by("-created_at")[:history]
        ],
        "activations": [
            {"version": activation.model_version.version, "activated_at": activation.activated_at}
            for activation in ModelActivation.objects.select_related("model_version").order_by("-activated_at")[
                :history
            ]
        ],
    }


def _assessment(prediction: Prediction, interface: str) -> Assessment:
    return Assessment(
        interface=interface,
        features=prediction.features,
        risk=prediction.risk,
        band=prediction.band,
        label=prediction.label,
        model_version=prediction.model_version,
    )


def assessment_create(*, prediction: Prediction, interface: str) -> Assessment:
    assessment = _assessment(prediction, interface)
    assessment.save()
    return assessment


def assessments_create(*, predictions: Sequence[Prediction], interface: str) -> list[Assessment]:
    # One INSERT for the batch; bulk_create sets primary keys on PostgreSQL and SQLite 3.35+.
    return Assessment.objects.bulk_create([_assessment(p, interface) for p in predictions])


def assessment_record_outcome(*, assessment_id: int, outcome: int) -> Assessment:
    """Record what happened to the person assessed (0: no diabetes, 1: diabetes)."""
    assessment = Assessment.objects.get(pk=assessment_id)
    assessment.outcome = outcome
    assessment.outcome_recorded_at = timezone.now()
    assessment.save(update_fields=["outcome", "outcome_recorded_at"])
    return assessment


def assessments_purge(*, older_than_days: int) -> int:
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = Assessment.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def outcome_dataset() -> tuple[numpy.ndarray, numpy.ndarray]:
    """Assessments with a recorded outcome, as training rows (NaN where a value was imputed)."""
    rows, outcomes = [], []
    for features, outcome in Assessment.objects.exclude(outcome=None).order_by("pk").values_list("features", "outcome"):
        rows.append([math.nan if features.get(f.key) is None else float(features[f.key]) for f in FEATURES])
        outcomes.append(int(outcome))
    X = numpy.array(rows, dtype=float).reshape(-1, len(FEATURES))
    return X, numpy.array(outcomes, dtype=int)


def model_train(
    *,
    activate: bool = True,
    from_db: bool = False,
    repeats: int = 10,
    seed: int = 42,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[ModelVersion, Any]:
    """Train, store and register a new version (and activate it unless told not to)."""
    dataset: Dataset = load_dataset()
    if from_db:
        dataset = with_extra_rows(dataset, *outcome_dataset())
    outcome = train(dataset, repeats=repeats, seed=seed, progress=progress)
    model = outcome.pipeline
    terms = additive_terms(model, feature_groups(model), dataset.X)
    term_means = terms.mean(axis=0)
    sample = dataset.X[:: max(1, len(dataset.X) // 20)]
    created = timezone.now()
    metadata = {
        **outcome.metadata,
        "created": created.isoformat(),
        "libraries": {"scikit-learn": sklearn.__version__, "numpy": numpy.__version__},
        "baseline": {
            "intercept": float(model[-1].intercept_[0]),
            "term_means": [float(m) for m in term_means],
            "logit": float(model[-1].intercept_[0] + term_means.sum()),
        },
        "self_check": {
            "rows": [[None if math.isnan(v) else float(v) for v in row] for row in sample],
            "risks": [float(p) for p in model.predict_proba(sample)[:, 1]],
        },
    }
    version, path, digest = write_artifact(pipeline=model, metadata=metadata, created=created)
    record = ModelVersion.objects.create(
        version=version,
        created_at=created,
        algorithm=outcome.chosen.candidate.name,
        artifact=str(path.relative_to(path.parent.parent)),
        artifact_sha256=digest,
        data_sha256=dataset.sha256,
        sklearn_version=sklearn.__version__,
        numpy_version=numpy.__version__,
        metrics=outcome.metadata["metrics"],
        metadata={**metadata, "version": version, "artifact_sha256": digest},
    )
    if activate:
        record = model_activate(version=version)
    return record, outcome


def model_activate(*, version: str) -> ModelVersion:
    """Make ``version`` the one every process serves. It is loaded and verified here first, so a
    broken artifact is refused before any process could try it."""
    try:
        record = ModelVersion.objects.get(version=version)
    except ModelVersion.DoesNotExist:
        known = ", ".join(ModelVersion.objects.values_list("version", flat=True)[:10]) or "none"
        raise ArtifactError(f"No model version {version!r}; known versions: {known}.") from None
    served = load_version(record)
    now = timezone.now()
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=record.pk).update(is_active=False)
        record.is_active = True
        record.activated_at = now
        record.save(update_fields=["is_active", "activated_at"])
        ModelActivation.objects.create(model_version=record, activated_at=now)
    active_model.install(served)
    return record
