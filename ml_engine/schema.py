"""The feature schema: the single description of what the model takes as input.

Everything that accepts measurements from the outside (the HTML form, the REST serializers, the
WebSocket consumer, the V2 endpoint, the model metadata and the OpenAPI document) is generated from
or validated by ``FEATURES`` and ``clean_features`` here, so a range or a label is changed in one
place only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np


@dataclass(frozen=True, slots=True)
class Feature:
    key: str
    label: str
    unit: str
    min: float
    max: float
    step: float
    integer: bool
    description: str
    # Column name in the Pima CSV, and whether a 0 there means "not measured".
    csv_column: str
    zero_means_missing: bool
    # Measured only in a clinic or lab: the page says "don't know? leave it blank: it is estimated".
    lab_only: bool = False

    @property
    def range_text(self) -> str:
        unit = "" if self.unit in ("count", "unitless", "years") else f" {self.unit}"
        return f"{_fmt(self.min)} to {_fmt(self.max)}{unit}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "min": self.min,
            "max": self.max,
            "step": self.step,
            "integer": self.integer,
            "description": self.description,
        }


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# Hard ranges are what is physiologically possible, not what the study saw: a value outside the
# training range is still accepted and flagged (``extrapolated:<key>``).
FEATURES: tuple[Feature, ...] = (
    Feature(
        key="pregnancies",
        label="Pregnancies",
        unit="count",
        min=0,
        max=30,
        step=1,
        integer=True,
        description="Number of times pregnant (0 is a real value).",
        csv_column="Pregnancies",
        zero_means_missing=False,
    ),
    Feature(
        key="glucose",
        label="Plasma glucose (2-h OGTT)",
        unit="mg/dL",
        min=20,
        max=600,
        step=1,
        integer=False,
        description="Plasma glucose two hours into an oral glucose tolerance test.",
        csv_column="Glucose",
        zero_means_missing=True,
    ),
    Feature(
        key="blood_pressure",
        label="Diastolic blood pressure",
        unit="mm Hg",
        min=20,
        max=200,
        step=1,
        integer=False,
        description="Diastolic blood pressure.",
        csv_column="BloodPressure",
        zero_means_missing=True,
    ),
    Feature(
        key="skin_thickness",
        label="Triceps skin-fold thickness",
        unit="mm",
        min=1,
        max=120,
        step=1,
        integer=False,
        description="Thickness of a pinch of skin at the back of the upper arm, measured in a clinic with calipers.",
        csv_column="SkinThickness",
        zero_means_missing=True,
        lab_only=True,
    ),
    Feature(
        key="insulin",
        label="2-hour serum insulin",
        unit="µU/mL",
        min=1,
        max=1500,
        step=1,
        integer=False,
        description="Insulin in the blood two hours into an oral glucose tolerance test (a lab test).",
        csv_column="Insulin",
        zero_means_missing=True,
        lab_only=True,
    ),
    Feature(
        key="bmi",
        label="Body mass index",
        unit="kg/m²",
        min=10,
        max=90,
        step=0.1,
        integer=False,
        description="Weight in kilograms divided by the square of height in metres.",
        csv_column="BMI",
        zero_means_missing=True,
    ),
    Feature(
        key="diabetes_pedigree",
        label="Diabetes pedigree function",
        unit="unitless",
        min=0,
        max=5,
        step=0.001,
        integer=False,
        description=(
            "A family-history score from the study: most people have 0.1 to 1; it is higher when more, "
            "and closer, relatives had diabetes."
        ),
        csv_column="DiabetesPedigreeFunction",
        zero_means_missing=False,
        lab_only=True,
    ),
    Feature(
        key="age",
        label="Age",
        unit="years",
        min=18,
        max=120,
        step=1,
        integer=True,
        description="Age in whole years (the model was trained on women aged 21 and over).",
        csv_column="Age",
        zero_means_missing=False,
    ),
)

FEATURE_KEYS: tuple[str, ...] = tuple(f.key for f in FEATURES)


@dataclass(frozen=True, slots=True)
class ClinicalCutoff:
    """A value that needs a clinician whatever the model says: ``warnings`` gets ``code``.

    README: "REST API" lists the codes; the model card shows ``message`` and ``source``.
    """

    code: str
    key: str
    limit: float
    inclusive: bool  # True: value >= limit; False: value > limit (as the source words it)
    message: str
    source: str

    def applies(self, value: float | None) -> bool:
        if value is None:
            return False
        return value >= self.limit if self.inclusive else value > self.limit


CLINICAL_CUTOFFS: tuple[ClinicalCutoff, ...] = (
    # American Diabetes Association, Standards of Care in Diabetes, section 2 "Diagnosis and
    # Classification of Diabetes": 2-h plasma glucose >= 200 mg/dL (11.1 mmol/L) during a 75-g OGTT
    # is a diagnostic criterion for diabetes.
    ClinicalCutoff(
        code="clinical:glucose_diagnostic",
        key="glucose",
        limit=200,
        inclusive=True,
        message=(
            "A 2-hour glucose of 200 mg/dL (11.1 mmol/L) or more is in the range used to diagnose "
            "diabetes. Please see a clinician about it, whatever the risk estimate says."
        ),
        source=(
            "American Diabetes Association, Standards of Care in Diabetes, section 2: a 2-hour plasma "
            "glucose of 200 mg/dL or more during a 75-g oral glucose tolerance test is a diagnostic criterion."
        ),
    ),
    # 2017 ACC/AHA Guideline for the Prevention, Detection, Evaluation, and Management of High Blood
    # Pressure in Adults (Whelton et al., Hypertension 2018;71:e13-e115), section 11.2: hypertensive
    # crisis is systolic > 180 and/or diastolic > 120 mm Hg.
    ClinicalCutoff(
        code="clinical:blood_pressure_crisis",
        key="blood_pressure",
        limit=120,
        inclusive=False,
        message=(
            "A diastolic blood pressure above 120 mm Hg is in the hypertensive crisis range. If this "
            "reading is right, seek medical care today."
        ),
        source=(
            "2017 ACC/AHA Guideline for the Prevention, Detection, Evaluation, and Management of High Blood "
            "Pressure in Adults, section 11.2: a diastolic pressure above 120 mm Hg is a hypertensive crisis."
        ),
    ),
)
CLINICAL_CODES: tuple[str, ...] = tuple(c.code for c in CLINICAL_CUTOFFS)
# Every code a prediction's ``warnings`` can carry (README: "REST API").
WARNING_CODES: tuple[str, ...] = tuple(f"extrapolated:{key}" for key in FEATURE_KEYS) + CLINICAL_CODES
FEATURES_BY_KEY: dict[str, Feature] = {f.key: f for f in FEATURES}


class FeatureValidationError(ValueError):
    """Invalid input. ``errors`` maps a field key (or ``non_field_errors``) to messages."""

    def __init__(self, errors: Mapping[str, list[str]]):
        self.errors = {key: list(messages) for key, messages in errors.items()}
        super().__init__("; ".join(m for ms in self.errors.values() for m in ms))


def value_error(feature: Feature, value: Any) -> str | None:
    """Return why ``value`` is not acceptable for ``feature``, or None when it is.

    ``value`` is a JSON-decoded value (or an already-parsed form value). Strings are refused:
    a JSON client that sends ``"120"`` has a bug worth hearing about. A valid value costs a few
    comparisons: the message is only written for a value that fails.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return f"{_allowed(feature)}; got {_describe(value)}."
    if isinstance(value, float | Decimal) and not math.isfinite(value):
        return f"{_allowed(feature)}; got {value}."
    if not feature.min <= value <= feature.max:
        return f"{_allowed(feature)}; got {_short(value)}."
    if feature.integer and value != int(value):
        return f"{feature.label} must be a whole number from {feature.range_text}; got {_short(value)}."
    return None


def _allowed(feature: Feature) -> str:
    return f"{feature.label} must be a number from {feature.range_text}"


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: Any) -> str:
    return _truncate(str(value) if isinstance(value, Decimal) else repr(value))


def _truncate(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


# At most this many unknown keys are named in an error, then how many more there were: an error
# never grows with the input (README: "Hardening").
MAX_UNKNOWN_REPORTED = 3


def clean_features(raw: Any, *, allow_empty: bool = False) -> dict[str, float | None]:
    """Validate a mapping of feature values and return it with every key present.

    Absent keys and ``None`` become ``None`` (the pipeline imputes them). Unknown keys, bad values
    and an input without a single feature raise ``FeatureValidationError`` naming every problem at
    once, except that only the first ``MAX_UNKNOWN_REPORTED`` unknown keys are named and the rest
    are counted. ``allow_empty`` is for merges where an all-``None`` state is meaningful.
    """
    if not isinstance(raw, Mapping):
        raise FeatureValidationError({"non_field_errors": [f"Features must be an object; got {_describe(raw)}."]})
    errors: dict[str, list[str]] = {}
    unknown = 0
    for key in raw:
        if key not in FEATURES_BY_KEY:
            unknown += 1
            if unknown <= MAX_UNKNOWN_REPORTED:  # the error stays small whatever the input holds
                name = _truncate(key if isinstance(key, str) else repr(key), 40)
                errors[name] = [f"Unknown feature {name}; expected one of: {', '.join(FEATURE_KEYS)}."]
    if unknown > MAX_UNKNOWN_REPORTED:
        more = f"And {unknown - MAX_UNKNOWN_REPORTED} more unknown features."  # the words of the REST API's errors too
        errors.setdefault("non_field_errors", []).append(more)
    cleaned: dict[str, float | None] = {}
    for feature in FEATURES:
        value = raw.get(feature.key)
        if value is None:
            cleaned[feature.key] = None
            continue
        problem = value_error(feature, value)
        if problem:
            errors[feature.key] = [problem]
        else:
            cleaned[feature.key] = int(value) if feature.integer else float(value)
    if errors:
        raise FeatureValidationError(errors)
    if not allow_empty and all(v is None for v in cleaned.values()):
        raise FeatureValidationError({"non_field_errors": ["Give at least one feature; missing ones are imputed."]})
    return cleaned


# Batches (README: "REST API"): the same rules as ``value_error``, checked with a few array
# operations over a whole matrix, so a valid batch of a thousand rows builds no message at all.
_MINS = np.array([f.min for f in FEATURES], dtype=float)
_MAXS = np.array([f.max for f in FEATURES], dtype=float)
_WHOLE = np.array([f.integer for f in FEATURES])
_PLAIN_TYPES = frozenset({int, float, type(None)})


def invalid_cells(X: np.ndarray, *, allow_missing: bool) -> np.ndarray:
    """The (row, column) pairs, in row-major order, of the cells of a float matrix (columns in
    schema order, NaN = missing) that ``value_error`` would refuse; NaN cells too unless
    ``allow_missing``. Describe a refused cell with ``value_error(FEATURES[column], value)``."""
    with np.errstate(invalid="ignore"):
        bad = ~((X >= _MINS) & (X <= _MAXS))  # out of range, infinite or NaN
        bad |= _WHOLE & (np.floor(X) != X)
    if allow_missing:
        bad &= ~np.isnan(X)
    return np.argwhere(bad)


def clean_matrix(instances: Sequence[Any], *, prefix: str = "instances") -> np.ndarray:
    """Validate many feature mappings at once and return them as a float matrix (columns in
    schema order, NaN where a value is imputed).

    The rules and the words are ``clean_features``'s, keyed ``<prefix>[i].<key>`` and raised
    together in one ``FeatureValidationError``. Instances that are plain dicts of known keys and
    JSON numbers are checked as one matrix; only the instances that fail that check (or are not
    plain) go through ``clean_features``, which writes their messages.
    """
    keys = FEATURES_BY_KEY.keys()
    rows: list[list[Any]] = []
    suspects: set[int] = set()
    for i, raw in enumerate(instances):
        row = list(map(raw.get, FEATURE_KEYS)) if type(raw) is dict and raw.keys() <= keys else None
        if row is None or not _PLAIN_TYPES.issuperset(map(type, row)):
            suspects.add(i)
            row = [None] * len(FEATURE_KEYS)
        rows.append(row)
    try:
        X = np.array(rows, dtype=float).reshape(len(rows), len(FEATURE_KEYS))
    except OverflowError:  # an integer too large for a float: let clean_features name it
        X = np.full((len(rows), len(FEATURE_KEYS)), np.nan)
        suspects = set(range(len(rows)))
    suspects.update(invalid_cells(X, allow_missing=True)[:, 0].tolist())
    suspects.update(np.flatnonzero(np.isnan(X).all(axis=1)).tolist())
    errors: dict[str, list[str]] = {}
    for i in sorted(suspects):
        try:
            cleaned = clean_features(instances[i])
        except FeatureValidationError as exc:
            for key, messages in exc.errors.items():
                errors[f"{prefix}[{i}].{key}"] = messages
        else:  # valid after all (a Mapping that is not a dict, Decimal values)
            X[i] = [np.nan if cleaned[k] is None else cleaned[k] for k in FEATURE_KEYS]
    if errors:
        raise FeatureValidationError(errors)
    return X
