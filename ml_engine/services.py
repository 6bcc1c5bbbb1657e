"""The business logic of the predictor: every interface (form, REST, V2, WebSocket, commands)
calls these functions and only translates their input and output. Reads that change nothing are
in ``ml_engine.selectors``."""

from __future__ import annotations

import asyncio
import getpass
import logging
import math
import random
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy
import sklearn
from django.db import DatabaseError, close_old_connections, connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models.sql import InsertQuery
from django.utils import timezone

from . import metrics
from .inference import additive_terms, feature_groups
from .models import Assessment, Interface, ModelActivation, ModelVersion, OutcomeChange, PredictionCount, ServingPlan
from .registry import (
    ARTIFACT_NAME,
    ArtifactError,
    ServedModel,
    active_model,
    load_version,
    registry_lock,
    serialise,
    store_version,
    version_name,
)
from .schema import (
    CLINICAL_CUTOFFS,
    FEATURE_KEYS,
    FEATURES,
    FeatureValidationError,
    clean_features,
    clean_matrix,
    invalid_cells,
    value_error,
)
from .selectors import assessment_get, outcome_counts, outcome_dataset
from .tally import tally
from .training import Dataset, load_dataset, quick_pool, train, with_extra_rows

logger = logging.getLogger(__name__)

MAX_INSTANCES = 1000
_WHOLE = tuple(f.integer for f in FEATURES)


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
    # README: "Model registry" (shadow): stored with an assessment, never in any reply.
    shadow_version: str = field(default="", repr=False)
    shadow_risk: float | None = field(default=None, repr=False)

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


def _explain(
    served: ServedModel,
    cleaned: dict[str, float | None],
    risk: float,
    band: str,
    contributions: Iterable[float],
    shadow: tuple[str, float | None] = ("", None),
) -> Prediction:
    # One pass over the features: a live keystroke pays for every step here (README: "Live
    # predictions (WebSocket)").
    ranges = served.training_ranges
    by_key: dict[str, float] = {}
    imputed: list[str] = []
    warnings: list[str] = []
    for key, contribution in zip(FEATURE_KEYS, contributions, strict=True):
        by_key[key] = float(contribution)
        value = cleaned[key]
        if value is None:
            imputed.append(key)
        elif not ranges[key][0] <= value <= ranges[key][1]:
            warnings.append(f"extrapolated:{key}")
    return Prediction(
        risk=risk,
        band=band,
        label=int(risk >= served.threshold),
        threshold=served.threshold,
        contributions=by_key,
        points=risk_points(baseline_logit=served.metadata["baseline"]["logit"], contributions=by_key),
        imputed=imputed,
        warnings=warnings + clinical_warnings(cleaned),
        model_name=served.name,
        model_version=served.version,
        features=cleaned,
        shadow_version=shadow[0],
        shadow_risk=shadow[1],
    )


def invalid_input_count(*, interface: Interface) -> None:
    """Count one input refused by validation. Every interface's refusals are counted here: the
    services' own checks below, REST's serializer (api/rest.py) and the form (live/views.py)."""
    metrics.INVALID_INPUTS.labels(interface).inc()


def predict(*, features: Mapping[str, Any], interface: Interface) -> Prediction:
    """Risk for one person. Raises FeatureValidationError (per-field messages) on bad input and
    ModelUnavailable when no model can serve. A REST request may be answered by the canary (its
    share of requests); the form is always answered by the active version."""
    started = time.perf_counter()
    try:
        cleaned = clean_features(features)
    except FeatureValidationError:
        invalid_input_count(interface=interface)
        raise
    return _predict_cleaned(cleaned, interface=interface, started=started, served=_answering(interface))


# README: "Model registry" (shadow and canary): which version answers, and the shadow beside it.
CANARY_REQUEST_INTERFACES = (Interface.REST, Interface.V2)  # per request; live sessions draw once (live_session_assign)


def _answering(interface: Interface) -> ServedModel:
    """The version that answers one request: the canary for its share of REST and V2 requests,
    otherwise the active version. Raises ModelUnavailable when no model can serve."""
    served = active_model.get()  # first: it loads the plan too in a process that has none yet
    plan = active_model.plan
    if plan.canary is not None and interface in CANARY_REQUEST_INTERFACES and random.random() < plan.canary_share:
        return plan.canary
    return served


def _session_model(canary: str | None) -> ServedModel:
    """The version that answers a live session: its canary while that version is still the canary."""
    if canary is not None:
        current = active_model.plan.canary
        if current is not None and current.version == canary:
            return current
    return active_model.get()


def canary_draw() -> str | None:
    """Whether a new live session (or one request) is answered by the canary: its version, drawn
    with the canary's share, or None for the active version."""
    plan = active_model.plan
    if plan.canary is None or random.random() >= plan.canary_share:
        return None
    return plan.canary.version


def live_session_assign() -> str | None:
    """Draw once, when a live session opens, which version answers it for its whole life (README:
    "Model registry"): the canary's version, or None for the active version. The session passes
    it to every ``predict_live``; while that version stays the canary, it answers. Memory only:
    safe on the event loop."""
    return canary_draw()


def _shadow_one(
    served: ServedModel, values: list, risk: float, band: str, interface: Interface
) -> tuple[str, float | None]:
    """The shadow version and its risk for one person ("", None without a shadow), and its
    agreement with the answer counted. A shadow without a fast path is not scored: it would cost
    milliseconds in the answer (README: "Model registry")."""
    shadow = active_model.plan.shadow
    if shadow is None:
        return "", None
    fast = shadow.model.fast
    if fast is None:
        metrics.SHADOW.skip(interface)
        return "", None
    shadow_risk = fast.predict_one(values)[0]
    metrics.SHADOW.observe_one(interface, abs(risk - shadow_risk), band_for(shadow_risk, shadow.bands) != band)
    return shadow.version, shadow_risk


def _band_names(risks: numpy.ndarray, bands: Mapping[str, Sequence[float]]) -> numpy.ndarray:
    """``band_for`` over an array."""
    names = numpy.full(len(risks), max(bands.items(), key=lambda item: item[1][1])[0], dtype=object)
    for name, (low, high) in reversed(list(bands.items())):  # the first band that fits wins, as in band_for
        names[(low <= risks) & (risks < high)] = name
    return names


def _shadow_matrix(
    served: ServedModel, X: numpy.ndarray, risks: numpy.ndarray, interface: Interface
) -> tuple[str, Any]:
    """The shadow version and its risks for every row of ``X`` in one vectorised call ("", None
    without a shadow or without a fast path), and their agreement with ``risks`` counted."""
    shadow = active_model.plan.shadow
    if shadow is None:
        return "", None
    fast = shadow.model.fast
    if fast is None:
        metrics.SHADOW.skip(interface, len(X))
        return "", None
    if len(X) == 1:  # one row: the scalar path costs a few µs where NumPy's calls cost tens
        values = [None if v != v else v for v in X[0].tolist()]
        shadow_risk = fast.predict_one(values)[0]
        risk = float(risks[0])
        flipped = band_for(shadow_risk, shadow.bands) != band_for(risk, served.bands)
        metrics.SHADOW.observe_one(interface, abs(risk - shadow_risk), flipped)
        return shadow.version, numpy.array([shadow_risk])
    shadow_risks, _ = fast.predict_matrix(X, contributions=False)
    flips = int(numpy.count_nonzero(_band_names(shadow_risks, shadow.bands) != _band_names(risks, served.bands)))
    metrics.SHADOW.observe_many(interface, numpy.abs(risks - shadow_risks), flips)
    return shadow.version, shadow_risks


def _predict_cleaned(
    cleaned: dict[str, float | None], *, interface: Interface, started: float, served: ServedModel | None = None
) -> Prediction:
    served = served if served is not None else active_model.get()
    values = [cleaned[key] for key in FEATURE_KEYS]
    risk, contributions = served.model.predict_one(values)
    band = band_for(risk, served.bands)
    shadow = _shadow_one(served, values, risk, band, interface)
    prediction = _explain(served, cleaned, risk, band, contributions, shadow)
    if served is not active_model.current:
        metrics.CANARY_BY_INTERFACE[interface].inc()
    metrics.LATENCY_BY_INTERFACE[interface].observe(time.perf_counter() - started)
    metrics.PREDICTIONS_BY_INTERFACE[interface].inc()
    tally.add(interface=interface, model_version=served.version, band=prediction.band, risk=risk)
    return prediction


# The live socket (README: "Live predictions (WebSocket)"): a session keeps a merged state that
# each update changes; live_state_merge validates an update as soon as it arrives, and
# predict_live answers only the newest state (the consumer skips states overtaken by newer ones).

# Inference that may take longer than ~100 µs (scikit-learn, or a first model load that reads the
# database) runs here: a few dedicated threads, never asgiref's single thread-sensitive executor
# that Django's sync views and ORM calls from async code share.
_live_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="live-predict")


def live_state_merge(*, state: Mapping[str, float | None], update: Mapping[str, Any]) -> dict[str, float | None]:
    """``state`` with the keys of ``update`` replaced (``None`` clears a key), validated whole.

    Raises FeatureValidationError (counted as an invalid ``ws`` input) when the merged state is
    not acceptable; ``state`` itself is never changed. The result may be all ``None``.
    """
    try:
        return clean_features({**state, **update}, allow_empty=True)
    except FeatureValidationError:
        invalid_input_count(interface=Interface.WS)
        raise


async def predict_live(*, features: dict[str, float | None], canary: str | None = None) -> Prediction | None:
    """Risk for a state returned by ``live_state_merge``; None when it has no value to predict from.
    ``canary`` is the session's draw from ``live_session_assign``.

    With the folded model (a few µs) this runs inline on the event loop; otherwise (scikit-learn,
    or a first model load that reads the database) on the live inference threads. Raises
    ModelUnavailable when no model can serve.
    """
    if all(value is None for value in features.values()):
        return None
    started = time.perf_counter()
    if live_prediction_inline(canary=canary):
        return _predict_cleaned(features, interface=Interface.WS, started=started, served=_session_model(canary))
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_live_pool, _predict_off_loop, features, started, canary)


def live_bands(*, canary: str | None = None) -> Mapping[str, Sequence[float]]:
    """The bands of the version that answers a live session (its canary, or the active version):
    what a shown percent must stay inside (live/wording.py). Raises ModelUnavailable."""
    return _session_model(canary).bands


def live_prediction_inline(*, canary: str | None = None) -> bool:
    """Whether ``predict_live`` answers without leaving the event loop (the folded model serves)."""
    plan_canary = active_model.plan.canary
    if canary is not None and plan_canary is not None and plan_canary.version == canary:
        return plan_canary.model.fast is not None
    served = active_model.current
    return served is not None and served.model.fast is not None


def _predict_off_loop(features: dict[str, float | None], started: float, canary: str | None = None) -> Prediction:
    try:
        return _predict_cleaned(features, interface=Interface.WS, started=started, served=_session_model(canary))
    finally:
        close_old_connections()  # a first model load may have opened a connection in this thread


def _check_batch_size(instances: Any) -> None:
    if not isinstance(instances, Sequence) or isinstance(instances, str | bytes) or not len(instances):
        raise FeatureValidationError({"instances": [f"Give a list of 1 to {MAX_INSTANCES} feature objects."]})
    if len(instances) > MAX_INSTANCES:
        raise FeatureValidationError(
            {"instances": [f"At most {MAX_INSTANCES} instances per request; got {len(instances)}."]}
        )


def predict_many(*, instances: Sequence[Any], interface: Interface, contributions: bool = True) -> list[Prediction]:
    """Risks for 1 to MAX_INSTANCES people in one vectorised model call, in input order.
    Errors name the instance: ``instances[3].glucose``. ``contributions=False`` leaves each
    prediction's contributions empty and skips computing them."""
    started = time.perf_counter()
    _check_batch_size(instances)
    try:
        X = clean_matrix(instances)
    except FeatureValidationError:
        invalid_input_count(interface=interface)
        raise
    served = _answering(interface)
    risks, terms = served.model.predict_matrix(X, contributions=contributions)
    shadow_version, shadow_risks = _shadow_matrix(served, X, risks, interface)
    all_shadow = shadow_risks.tolist() if shadow_risks is not None else [None] * len(X)
    missing = numpy.isnan(X)
    ranges = numpy.array([served.training_ranges[key] for key in FEATURE_KEYS], dtype=float)
    with numpy.errstate(invalid="ignore"):
        outside = (ranges[:, 0] > X) | (ranges[:, 1] < X)  # NaN compares False: imputed is not extrapolated
    # One conversion to Python objects for the whole batch; the loop below then touches no array.
    labels = (risks >= served.threshold).tolist()
    all_terms = terms.tolist() if terms is not None else [None] * len(X)
    bands, threshold, name, version = served.bands, served.threshold, served.name, served.version
    # Points as risk_points computes them, for the whole batch at once.
    baseline_logit = served.metadata["baseline"]["logit"]
    all_points = (
        (100.0 * (1.0 / (1.0 + numpy.exp(-(baseline_logit + terms))) - _sigmoid(baseline_logit))).tolist()
        if terms is not None
        else [None] * len(X)
    )
    predictions = []
    for row, risk, label, row_terms, row_points, row_missing, row_outside, shadow_risk in zip(
        X.tolist(),
        risks.tolist(),
        labels,
        all_terms,
        all_points,
        missing.tolist(),
        outside.tolist(),
        all_shadow,
        strict=True,
    ):
        features = {
            key: None if gap else (int(value) if whole else value)
            for key, whole, gap, value in zip(FEATURE_KEYS, _WHOLE, row_missing, row, strict=True)
        }
        by_key = dict(zip(FEATURE_KEYS, row_terms, strict=True)) if row_terms is not None else {}
        predictions.append(
            Prediction(
                risk=risk,
                band=band_for(risk, bands),
                label=int(label),
                threshold=threshold,
                contributions=by_key,
                points=dict(zip(FEATURE_KEYS, row_points, strict=True)) if row_points is not None else {},
                imputed=[key for key, gap in zip(FEATURE_KEYS, row_missing, strict=True) if gap],
                warnings=[f"extrapolated:{key}" for key, out in zip(FEATURE_KEYS, row_outside, strict=True) if out]
                + clinical_warnings(features),
                model_name=name,
                model_version=version,
                features=features,
                shadow_version=shadow_version,
                shadow_risk=shadow_risk,
            )
        )
    if served is not active_model.current:
        metrics.CANARY_BY_INTERFACE[interface].inc(len(predictions))
    metrics.LATENCY_BY_INTERFACE[interface].observe(time.perf_counter() - started)
    metrics.PREDICTIONS_BY_INTERFACE[interface].inc(len(predictions))
    tally.add_risks(interface=interface, model_version=version, risks=risks, bands=bands)
    return predictions


@dataclass(frozen=True, slots=True)
class RiskBatch:
    """Risks and labels for the rows of a matrix, and the model version that computed them."""

    risks: numpy.ndarray  # float64, one per row
    labels: numpy.ndarray  # int64: risk >= threshold
    model_name: str
    model_version: str


def predict_risks(*, matrix: numpy.ndarray, interface: Interface, canary: bool = True) -> RiskBatch:
    """Risks and labels only (no contributions, no per-row objects) for a float matrix of 1 to
    MAX_INSTANCES rows, columns in schema order: the V2 inference endpoint's service.

    Every value must be present and valid: refused cells raise FeatureValidationError keyed
    ``instances[i].<key>`` with ``value_error``'s words (at most 10 are named). The check is a
    few array operations when the matrix is valid. Raises ModelUnavailable when no model can serve.
    The canary answers its share of calls unless ``canary`` is False (a version named by the caller).
    """
    started = time.perf_counter()
    X = numpy.asarray(matrix, dtype=float)
    if X.ndim != 2 or X.shape[1] != len(FEATURE_KEYS) or not 1 <= len(X) <= MAX_INSTANCES:
        raise FeatureValidationError(
            {"instances": [f"Give 1 to {MAX_INSTANCES} rows of {len(FEATURE_KEYS)} values; got shape {X.shape}."]}
        )
    bad = invalid_cells(X, allow_missing=False)
    if len(bad):
        invalid_input_count(interface=interface)
        errors = {}
        for i, j in bad[:10].tolist():
            feature, value = FEATURES[j], float(X[i, j])
            # invalid_cells lists exactly the cells value_error refuses, and NaN ones.
            problem = value_error(feature, value) if value == value else None
            errors[f"instances[{i}].{feature.key}"] = [problem or f"{feature.label} is missing."]
        raise FeatureValidationError(errors)
    served = _answering(interface) if canary else active_model.get()
    risks, _ = served.model.predict_matrix(X, contributions=False)
    _shadow_matrix(served, X, risks, interface)  # V2 stores nothing: the agreement metrics only
    if served is not active_model.current:
        metrics.CANARY_BY_INTERFACE[interface].inc(len(risks))
    metrics.LATENCY_BY_INTERFACE[interface].observe(time.perf_counter() - started)
    metrics.PREDICTIONS_BY_INTERFACE[interface].inc(len(risks))
    tally.add_risks(interface=interface, model_version=served.version, risks=risks, bands=served.bands)
    return RiskBatch(
        risks=risks,
        labels=(risks >= served.threshold).astype(numpy.int64),
        model_name=served.name,
        model_version=served.version,
    )


def _assessment(prediction: Prediction, interface: Interface) -> Assessment:
    return Assessment(
        interface=interface,
        features=prediction.features,
        risk=prediction.risk,
        band=prediction.band,
        label=prediction.label,
        model_version=prediction.model_version,
        shadow_version=prediction.shadow_version,
        shadow_risk=prediction.shadow_risk,
    )


def assessment_create(*, prediction: Prediction, interface: Interface) -> Assessment:
    assessment = _assessment(prediction, interface)
    assessment.save()
    return assessment


def assessments_create(*, predictions: Sequence[Prediction], interface: Interface) -> list[Assessment]:
    # One INSERT for the batch; bulk_create sets primary keys on PostgreSQL and SQLite 3.35+.
    return Assessment.objects.bulk_create(assessments_build(predictions=predictions, interface=interface))


def assessments_build(*, predictions: Sequence[Prediction], interface: Interface) -> list[Assessment]:
    """Unsaved assessments of ``predictions`` with their public ids already drawn. No I/O: a caller
    on the event loop can make its answer ready while ``assessments_insert`` writes them."""
    return [_assessment(p, interface) for p in predictions]


def assessments_insert(*, assessments: Sequence[Assessment], cursor: CursorWrapper | None = None) -> None:
    """Store assessments made by ``assessments_build`` in one INSERT. Their database keys are not
    read back (``pk`` stays None): outside the server an assessment is known by its public id.
    ``cursor``: a cursor of this thread's connection that a caller keeps open between writes (one
    row only); without it, a new one."""
    if len(assessments) > 1:
        Assessment.objects.bulk_create(assessments)
        return
    # One row: the statement Django's compiler writes for it, compiled once per database. save()
    # compiles it afresh each time, ~0.3 ms of Python that holds the GIL while the event loop
    # answers other requests; here the parameters and one execute remain.
    (assessment,) = assessments
    params = [f.get_db_prep_save(f.pre_save(assessment, True), connection) for f in _INSERTED_FIELDS]
    if cursor is not None:
        cursor.execute(_insert_sql(), params)
        return
    with connection.cursor() as new_cursor:
        new_cursor.execute(_insert_sql(), params)


_INSERTED_FIELDS = tuple(f for f in Assessment._meta.concrete_fields if not f.primary_key)
_insert_statements: dict[tuple[str, str], str] = {}


def _insert_sql() -> str:
    key = (connection.alias, connection.vendor)
    if key not in _insert_statements:
        query = InsertQuery(Assessment)
        query.insert_values(_INSERTED_FIELDS, [Assessment()])
        ((sql, _),) = query.get_compiler(connection=connection).as_sql()
        _insert_statements[key] = sql
    return _insert_statements[key]


class OutcomeAlreadyRecorded(Exception):
    """The assessment already has an outcome; only staff may change it (README: "Access and roles")."""

    def __init__(self, assessment: Assessment):
        self.assessment = assessment
        super().__init__(
            f"The outcome of assessment {assessment.public_id} was already recorded; only staff can change it."
        )


@dataclass(frozen=True, slots=True)
class Recorder:
    """Who records an outcome: an API key with the outcomes scope or a staff member."""

    source: str  # Assessment.OutcomeSource
    name: str
    user: Any = None  # the staff User, for the audit row

    @property
    def is_staff(self) -> bool:
        return self.source == Assessment.OutcomeSource.STAFF


def assessment_record_outcome(
    *, public_id: Any, outcome: int, recorder: Recorder, allow_change: bool = False
) -> Assessment:
    """Record what happened to the person assessed (0: no diabetes, 1: diabetes), once.

    A second recording raises OutcomeAlreadyRecorded unless ``allow_change`` is given by a staff
    recorder; either way an OutcomeChange row keeps who, when and old → new."""
    if allow_change and not recorder.is_staff:
        raise PermissionError("Only staff can change a recorded outcome.")
    with transaction.atomic():
        assessment = assessment_get(public_id=public_id)
        # Lock the row so two concurrent first recordings cannot both succeed.
        assessment = Assessment.objects.select_for_update().get(pk=assessment.pk)
        old = assessment.outcome
        if old is not None and not allow_change:
            raise OutcomeAlreadyRecorded(assessment)
        now = timezone.now()
        assessment.outcome = outcome
        assessment.outcome_recorded_at = now
        assessment.outcome_source = recorder.source
        assessment.outcome_recorded_by = recorder.name[:200]
        assessment.save(update_fields=["outcome", "outcome_recorded_at", "outcome_source", "outcome_recorded_by"])
        OutcomeChange.objects.create(
            assessment=assessment,
            changed_at=now,
            changed_by=recorder.name[:200],
            source=recorder.source,
            user=recorder.user,
            old_outcome=old,
            new_outcome=outcome,
        )
    return assessment


def assessments_purge(*, older_than_days: int) -> int:
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted, _ = Assessment.objects.filter(created_at__lt=cutoff).delete()
    return deleted


def prediction_counts_purge(*, older_than_days: int) -> int:
    """Delete the daily prediction counts (README: "Monitoring") of the UTC days that ended more
    than ``older_than_days`` days ago, as ``assessments_purge`` does for assessments; returns the
    number of rows deleted."""
    cutoff = (timezone.now() - timedelta(days=older_than_days)).date()
    deleted, _ = PredictionCount.objects.filter(day__lt=cutoff).delete()
    return deleted


def model_train(
    *,
    activate: bool = True,
    from_db: bool = False,
    repeats: int = 10,
    seed: int = 42,
    quick: bool = False,
    force: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[ModelVersion, Any]:
    """Train, store and register a new version, and activate it unless told not to or the
    promotion gate (``activation_gate``, GATE_RULE) refuses it; ``force`` activates anyway and is
    recorded in the version's metadata under ``activation_gate.forced``.

    ``quick`` cross-validates only the candidate that is served (``training.quick_pool``) with one 5-fold
    round, a few seconds, for a first start (README: "Model registry"); otherwise every candidate is
    compared over ``repeats`` x 5 folds."""
    dataset: Dataset = load_dataset()
    base = dataset
    check_writable()  # before minutes of cross-validation, not after
    extra_X, extra_y = numpy.zeros((0, len(FEATURES))), numpy.zeros(0, dtype=int)
    if from_db:
        extra_X, extra_y = outcome_dataset()
        dataset = with_extra_rows(dataset, extra_X, extra_y)
    if quick:
        outcome = train(dataset, repeats=1, seed=seed, pool=quick_pool(), progress=progress)
    else:
        outcome = train(dataset, repeats=repeats, seed=seed, progress=progress)
    model = outcome.pipeline
    terms = additive_terms(model, feature_groups(model), dataset.X)
    term_means = terms.mean(axis=0)
    sample = dataset.X[:: max(1, len(dataset.X) // 20)]
    # Quantiles of every feature: with check_rows they cover each polynomial piece of the fold, so
    # a process verifies the fast path from the version's metadata alone, never the training CSV.
    quantiles = numpy.nanquantile(dataset.X, numpy.linspace(0, 1, 101), axis=0)
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
        "fast_path_check": {"rows": [[float(v) for v in row] for row in quantiles]},
    }
    if from_db:
        metadata["data"] = {**metadata["data"], "sources": outcome_counts()}
    gate = None
    if activate:
        # README: "Promotion gate": compared with the active version on the training's own folds.
        gate = activation_gate(
            candidate=model,
            recipe=outcome.chosen.candidate.build(seed),
            base=base,
            extra_X=extra_X,
            extra_y=extra_y,
            repeats=1 if quick else repeats,
            seed=seed,
        )
        metadata["activation_gate"] = {**gate.as_dict(), "forced": bool(force and not gate.passed)}
    content, digest = serialise(model)
    version = version_name(created, digest)
    record = store_version(
        fields={
            "version": version,
            "created_at": created,
            "algorithm": outcome.chosen.candidate.name,
            "artifact": f"{version}/{ARTIFACT_NAME}",
            "artifact_sha256": digest,
            "data_sha256": dataset.sha256,
            "sklearn_version": sklearn.__version__,
            "numpy_version": numpy.__version__,
            "metrics": outcome.metadata["metrics"],
            "metadata": {**metadata, "version": version, "artifact_sha256": digest},
        },
        content=content,
    )
    if gate is not None and (gate.passed or force):
        record = model_activate(version=version)
    return record, outcome


# README: "Promotion gate". `train` activates a new version on its own only when it passes both
# checks; otherwise it is stored inactive with the reasons, and `--force` overrides (recorded).
GATE_MAX_LOG_LOSS_RISE = 0.01  # mean held-out log loss (nats) may rise by at most this: ~2 % of ~0.47
GATE_MAX_AUC_DROP = 0.01  # mean held-out ROC AUC may fall by at most this
GATE_REPEATS = 2  # at most this many repeats of the training folds are refitted (2 x 5 = 10 pairs)
GATE_MAX_SHIFT = 0.20  # a reference person's risk moving by more than 20 points counts as "moved"
GATE_MAX_MOVED_SHARE = 0.05  # more than 5 % of the reference people moved: a sharp disagreement
GATE_RULE = (
    "A new version is activated on its own only if (1) it is not worse than the active version on the "
    "same cross-validation folds of the original CSV: the active version's pipeline and the new one are "
    "each fitted on the same training folds (the new one with its database rows added, if any) and "
    "scored on the same held-out CSV rows; over these paired folds the new one's mean log loss may be at "
    f"most {GATE_MAX_LOG_LOSS_RISE} higher and its mean ROC AUC at most {GATE_MAX_AUC_DROP} lower; and "
    f"(2) on the CSV's people (the reference people) at most {GATE_MAX_MOVED_SHARE:.0%} of the risks move "
    f"by more than {GATE_MAX_SHIFT:.0%} points from the active version's. Otherwise the version is stored "
    "but not activated; `train --force` overrides and is recorded."
)


@dataclass(frozen=True, slots=True)
class ActivationGate:
    """Whether a new version may be activated without a person (GATE_RULE)."""

    passed: bool
    reasons: list[str]
    measures: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "reasons": self.reasons, "measures": self.measures, "rule": GATE_RULE}


def _paired_folds(
    *,
    new_recipe: Any,
    old_recipe: Any,
    base: Dataset,
    extra_X: numpy.ndarray,
    extra_y: numpy.ndarray,
    splits: int,
    repeats: int,
    seed: int,
) -> dict[str, Any]:
    """Fit both recipes on the same training folds of ``base`` (the new one with the extra rows
    added) and score both on the same held-out rows: per-fold log loss and ROC AUC, new − old."""
    from sklearn.base import clone
    from sklearn.model_selection import RepeatedStratifiedKFold

    from .evaluation import log_loss, roc_auc

    folds = RepeatedStratifiedKFold(n_splits=splits, n_repeats=repeats, random_state=seed).split(base.X, base.y)
    scores: dict[str, list[float]] = {"log_loss_new": [], "log_loss_old": [], "auc_new": [], "auc_old": []}
    for train_rows, test_rows in folds:
        X_train, y_train = base.X[train_rows], base.y[train_rows]
        X_test, y_test = base.X[test_rows], base.y[test_rows]
        old = clone(old_recipe).fit(X_train, y_train)
        if len(extra_y):
            new = clone(new_recipe).fit(numpy.vstack([X_train, extra_X]), numpy.concatenate([y_train, extra_y]))
        else:
            new = clone(new_recipe).fit(X_train, y_train)
        p_old, p_new = old.predict_proba(X_test)[:, 1], new.predict_proba(X_test)[:, 1]
        scores["log_loss_new"].append(log_loss(y_test, p_new))
        scores["log_loss_old"].append(log_loss(y_test, p_old))
        scores["auc_new"].append(roc_auc(y_test, p_new))
        scores["auc_old"].append(roc_auc(y_test, p_old))
    s = {k: numpy.array(v) for k, v in scores.items()}
    d_loss, d_auc = s["log_loss_new"] - s["log_loss_old"], s["auc_new"] - s["auc_old"]
    return {
        "folds": len(d_loss),
        "fold_plan": f"{repeats} x {splits}-fold repeated stratified, seed {seed}, on the {len(base.y)} CSV rows",
        "log_loss_new": round(float(s["log_loss_new"].mean()), 4),
        "log_loss_active": round(float(s["log_loss_old"].mean()), 4),
        "log_loss_difference": round(float(d_loss.mean()), 4),
        "log_loss_worse_folds": int((d_loss > 0).sum()),
        "roc_auc_new": round(float(s["auc_new"].mean()), 4),
        "roc_auc_active": round(float(s["auc_old"].mean()), 4),
        "roc_auc_difference": round(float(d_auc.mean()), 4),
        "roc_auc_worse_folds": int((d_auc < 0).sum()),
    }


def activation_gate(
    *,
    candidate: Any,
    recipe: Any,
    base: Dataset,
    extra_X: numpy.ndarray,
    extra_y: numpy.ndarray,
    splits: int = 5,
    repeats: int = 1,
    seed: int = 42,
) -> ActivationGate:
    """Check a new version against the active one (GATE_RULE).

    ``candidate`` is the new fitted pipeline (what would serve), ``recipe`` the unfitted pipeline it
    came from; ``base`` the original CSV and ``extra_X``/``extra_y`` the database rows it was also
    trained on. The paired folds are the first ``min(repeats, GATE_REPEATS)`` repeats of the
    training's own folds (``splits``, ``seed``). With no active version, or one that does not load,
    there is nothing to compare with and the gate passes, saying so."""
    reasons: list[str] = []
    measures: dict[str, Any] = {"reference_rows": len(base.y), "database_rows": len(extra_y)}
    active = ModelVersion.objects.filter(is_active=True).first()
    measures["active_version"] = None if active is None else active.version
    if active is None:
        measures["compared"] = "no active version: nothing to compare with"
        return ActivationGate(passed=True, reasons=reasons, measures=measures)
    try:
        served = load_version(active)
    except ArtifactError as exc:
        measures["compared"] = f"not compared: the active version does not load ({exc})"
        return ActivationGate(passed=True, reasons=reasons, measures=measures)
    old_pipeline = served.model.pipeline
    paired = _paired_folds(
        new_recipe=recipe,
        old_recipe=old_pipeline,
        base=base,
        extra_X=extra_X,
        extra_y=extra_y,
        splits=splits,
        repeats=max(1, min(repeats, GATE_REPEATS)),
        seed=seed,
    )
    measures.update(paired)
    if paired["log_loss_difference"] > GATE_MAX_LOG_LOSS_RISE:
        reasons.append(
            f"it is worse than the active version {active.version} on the same {paired['folds']} held-out folds: "
            f"mean log loss {paired['log_loss_new']:.4f} against {paired['log_loss_active']:.4f} "
            f"(+{paired['log_loss_difference']:.4f}, worse in {paired['log_loss_worse_folds']} of "
            f"{paired['folds']} folds; at most +{GATE_MAX_LOG_LOSS_RISE} is allowed)"
        )
    if paired["roc_auc_difference"] < -GATE_MAX_AUC_DROP:
        reasons.append(
            f"it ranks people worse than the active version {active.version} on the same {paired['folds']} "
            f"held-out folds: mean ROC AUC {paired['roc_auc_new']:.4f} against {paired['roc_auc_active']:.4f} "
            f"({paired['roc_auc_difference']:+.4f}, lower in {paired['roc_auc_worse_folds']} of "
            f"{paired['folds']} folds; at most {GATE_MAX_AUC_DROP} lower is allowed)"
        )
    new = candidate.predict_proba(base.X)[:, 1]
    old = old_pipeline.predict_proba(base.X)[:, 1]
    shift = numpy.abs(new - old)
    moved = float(numpy.mean(shift > GATE_MAX_SHIFT))
    measures.update(max_shift=round(float(shift.max()), 4), moved_share=round(moved, 4))
    if moved > GATE_MAX_MOVED_SHARE:
        reasons.append(
            f"it disagrees sharply with the active version {active.version}: {moved:.1%} of the "
            f"{len(base.y)} reference people move by more than {GATE_MAX_SHIFT:.0%} points "
            f"(largest move {float(shift.max()):.0%}; at most {GATE_MAX_MOVED_SHARE:.0%} may)"
        )
    return ActivationGate(passed=not reasons, reasons=reasons, measures=measures)


def check_writable() -> None:
    """Fail early, in words, when the database cannot take a new version (README: "Commands")."""
    try:
        with transaction.atomic():
            # A real row written and rolled back: proves the database (for SQLite, the file and
            # its folder) accepts writes, without leaving anything behind.
            ModelVersion.objects.create(
                version=f"write-check-{uuid.uuid4().hex[:12]}",
                created_at=timezone.now(),
                algorithm="-",
                artifact="-",
                artifact_sha256="-",
                data_sha256="-",
                sklearn_version="-",
                numpy_version="-",
            )
            transaction.set_rollback(True)
    except DatabaseError as exc:
        raise TrainingStorageError(
            f"The database does not accept writes ({type(exc).__name__}: {exc}); a new model version "
            "could not be stored. Check DATABASE_URL and that the database (for SQLite, the file and "
            "its folder) is writable, then run train again."
        ) from None


class TrainingStorageError(Exception):
    """Training would produce a version that cannot be stored."""


def model_ensure(*, progress: Callable[[str, int, int], None] | None = None) -> tuple[str, str | None]:
    """Make sure a working model is active; train one quickly (``model_train(quick=True)``) when
    none is or the active one does not load. Returns (served version, why it was trained, or None
    when nothing was trained).

    Safe when several processes start at once: the check and the training run under
    ``registry_lock``, so the first trains and the others find its model active."""
    with registry_lock():
        reason = None
        if ModelVersion.objects.filter(is_active=True).exists():
            active_model.refresh()
            if active_model.current is not None:
                return active_model.current.version, None
            reason = f"the active model does not load ({active_model.error})"
        record, _ = model_train(quick=True, progress=progress)
        return record.version, reason or "no model is active"


def _version_record(version: str) -> ModelVersion:
    try:
        return ModelVersion.objects.get(version=version)
    except ModelVersion.DoesNotExist:
        known = ", ".join(ModelVersion.objects.values_list("version", flat=True)[:10]) or "none"
        raise ArtifactError(f"No model version {version!r}; known versions: {known}.") from None


def model_activate(*, version: str, changed_by: str = "") -> ModelVersion:
    """Make ``version`` the one every process serves. It is loaded and verified here first, so a
    broken artifact is refused before any process could try it. A shadow and a canary end in the
    same transaction (README: "Model registry"): activating the canary's own version makes it
    answer everyone, so its sessions see no change."""
    record = _version_record(version)
    served = load_version(record)
    now = timezone.now()
    with transaction.atomic():
        ModelVersion.objects.filter(is_active=True).exclude(pk=record.pk).update(is_active=False)
        record.is_active = True
        record.activated_at = now
        record.save(update_fields=["is_active", "activated_at"])
        ModelActivation.objects.create(model_version=record, activated_at=now)
        plan = serving_plan_get()
        if plan is not None and (plan.shadow_version or plan.canary_version):
            ServingPlan.objects.create(
                changed_at=now, changed_by=changed_by or operator_name(), note=f"ended by activating {version}"
            )
    active_model.install(served)
    active_model.refresh()
    return record


# README: "Model registry" (shadow and canary). Each change is a new ServingPlan row; every
# process's registry watcher follows the newest within MODEL_WATCH_INTERVAL.


def operator_name() -> str:
    """Who runs a management command, for the plan's history."""
    try:
        return f"{getpass.getuser()} (manage.py)"[:200]
    except (KeyError, OSError):  # no name for this uid, as in some containers
        return "manage.py"


def serving_plan_get() -> ServingPlan | None:
    """The plan in force: the newest ServingPlan row (None before any)."""
    return ServingPlan.objects.order_by("-pk").first()


def serving_plan_history(*, limit: int = 20) -> list[ServingPlan]:
    """The plan's changes, newest first."""
    return list(ServingPlan.objects.order_by("-pk")[:limit])


def _candidate(version: str, role: str) -> ServedModel:
    """``version`` loaded and verified for ``role``; it may not be the active version."""
    record = _version_record(version)
    if record.is_active:
        raise ArtifactError(f"Model version {version} is the active version; a {role} must be another version.")
    return load_version(record)


def _plan_change(*, changed_by: str, note: str, **fields: Any) -> ServingPlan:
    with transaction.atomic():
        current = ServingPlan.objects.select_for_update().order_by("-pk").first()
        kept = {
            "shadow_version": current.shadow_version if current else "",
            "canary_version": current.canary_version if current else "",
            "canary_share": current.canary_share if current else 0.0,
        }
        plan = ServingPlan.objects.create(
            changed_at=timezone.now(), changed_by=changed_by or operator_name(), note=note, **{**kept, **fields}
        )
    active_model.refresh()
    return plan


def model_shadow(*, version: str | None, changed_by: str = "") -> tuple[ServingPlan, ServedModel | None]:
    """Score every prediction with ``version`` too, unseen (None: stop). Loaded and verified here
    first; raises ArtifactError for an unknown, broken or active version. Returns the new plan and
    the loaded shadow (whose ``model.fast`` is None when it will not be scored: it has no fast path)."""
    if version is None:
        return _plan_change(changed_by=changed_by, note="shadow off", shadow_version=""), None
    served = _candidate(version, "shadow")
    return _plan_change(changed_by=changed_by, note=f"shadow {version}", shadow_version=version), served


def model_canary(*, version: str | None, share: float = 0.0, changed_by: str = "") -> ServingPlan:
    """Answer ``share`` (0 to 1) of new live sessions and REST/V2 requests with ``version`` (None:
    stop; its sessions go back to the active version). A share of 0 sends no new sessions to it and
    keeps the ones it has. Raises ArtifactError for an unknown, broken or active version and
    ValueError for a share outside 0..1."""
    if version is None:
        return _plan_change(changed_by=changed_by, note="canary off", canary_version="", canary_share=0.0)
    if not 0.0 <= share <= 1.0:  # NaN fails this too
        raise ValueError(f"The canary's share must be from 0 to 1; got {share}.")
    _candidate(version, "canary")
    return _plan_change(
        changed_by=changed_by, note=f"canary {version} at {share:g}", canary_version=version, canary_share=share
    )
