"""Serializers shared by the REST views, generated from the feature schema.

Every feature field is built from ``ml_engine.schema.FEATURES`` (label, unit, range, description),
and values are validated by ``clean_features`` / ``value_error`` only, so the messages are the ones
the form and the WebSocket give. DRF's own number fields would accept ``"12"`` and ``true``; these
do not.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from ml_engine.schema import (
    CLINICAL_CUTOFFS,
    FEATURE_KEYS,
    FEATURES,
    MAX_UNKNOWN_REPORTED,
    WARNING_CODES,
    Feature,
    FeatureValidationError,
    clean_features,
    value_error,
)
from ml_engine.services import MAX_INSTANCES

# Every key a request body may use (features, the body's own fields): the JSON parser keeps these
# when it caps an object with too many members (api.drf.CappedObject).
BODY_KEYS = frozenset(FEATURE_KEYS) | {"features", "instances", "outcome"}

# At most this many unknown keys are named in an error, as on the live socket (the schema's bound);
# the rest are counted ("and N more"), so an object with 200,000 unknown keys costs one pass over
# its keys and a small 400 body.
MAX_NAMED_UNKNOWN = MAX_UNKNOWN_REPORTED


def safe_key(key: Any, limit: int = 40) -> str:
    """A client's key as printable text for an error message: cut to ``limit`` characters, lone
    surrogates escaped (they cannot be encoded as UTF-8 in the reply)."""
    text = key if isinstance(key, str) else repr(key)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def unknown_keys_error(data: dict, known: Any, *, noun: str, expected: str = "expected") -> dict[str, list[str]] | None:
    """``None`` when every key of ``data`` is in ``known``; otherwise a bounded error: the first
    MAX_NAMED_UNKNOWN unknown keys by name, the others as a count under ``non_field_errors``."""
    unknown = [key for key in data if key not in known]
    omitted = getattr(data, "omitted", 0)  # members the parser counted but did not keep: all unknown
    if not unknown and not omitted:
        return None
    names = ", ".join(known)
    errors: dict[str, list[str]] = {}
    for key in unknown[:MAX_NAMED_UNKNOWN]:
        name = safe_key(key)
        errors[name] = [f"Unknown {noun} {name}; {expected}: {names}."]
    more = len(unknown[MAX_NAMED_UNKNOWN:]) + omitted
    if more:
        errors["non_field_errors"] = [f"And {more} more unknown {noun}s."]
    return errors


class StrictSerializer(serializers.Serializer):
    """A serializer that refuses keys it does not declare (published as additionalProperties: false)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            errors = unknown_keys_error(data, self.fields, noun="field")
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def _feature_help(feature: Feature) -> str:
    return (
        f"{feature.label} ({feature.unit}): {feature.description} "
        f"Allowed: {feature.range_text}; null or absent is imputed."
    )


class _FeatureMixin:
    """A feature's value: a JSON number within the schema's range, checked by ``value_error``."""

    feature: Feature

    # Any: the mixin serves FloatField (a float) and IntegerField (an int) alike.
    def to_internal_value(self, data: Any) -> Any:
        problem = value_error(self.feature, data)
        if problem:
            raise serializers.ValidationError(problem)
        return int(data) if self.feature.integer else float(data)


class FeatureValueField(_FeatureMixin, serializers.FloatField):
    """A real-valued feature; published as ``type: number`` with the schema's range."""

    def __init__(self, feature: Feature, **kwargs: Any):
        self.feature = feature
        kwargs.setdefault("label", feature.label)
        kwargs.setdefault("help_text", _feature_help(feature))
        super().__init__(min_value=feature.min, max_value=feature.max, **kwargs)


class FeatureIntegerField(_FeatureMixin, serializers.IntegerField):
    """A whole-number feature (pregnancies, age); published as ``type: integer``."""

    def __init__(self, feature: Feature, **kwargs: Any):
        self.feature = feature
        kwargs.setdefault("label", feature.label)
        kwargs.setdefault("help_text", _feature_help(feature))
        super().__init__(min_value=int(feature.min), max_value=int(feature.max), **kwargs)


def feature_field(feature: Feature, **kwargs: Any) -> serializers.Field:
    field_class = FeatureIntegerField if feature.integer else FeatureValueField
    return field_class(feature, **kwargs)


class FeaturesSerializer(StrictSerializer):
    """The eight measurements of one person. At least one is needed; absent or null ones are imputed
    with the training median. Unknown keys, strings, booleans and values outside the range are refused."""

    # Validated by clean_features as a whole (unknown keys, ranges, at least one value), so every
    # problem is reported at once with the schema's messages.

    one_non_null_of = FEATURE_KEYS  # published as anyOf: the "at least one feature" rule

    def get_fields(self) -> dict[str, serializers.Field]:
        return {f.key: feature_field(f, required=False, allow_null=True) for f in FEATURES}

    def to_internal_value(self, data: Any) -> dict[str, float | None]:
        if isinstance(data, dict) and len(data) > len(FEATURE_KEYS) + MAX_NAMED_UNKNOWN:
            # Many unknown keys: refused before any value is looked at, with a bounded message
            # (README: "Errors"); a few are reported by clean_features with the values' problems.
            errors = unknown_keys_error(data, FEATURE_KEYS, noun="feature", expected="expected one of")
            if errors:
                raise serializers.ValidationError(errors)
        try:
            return clean_features(data)
        except FeatureValidationError as exc:
            raise serializers.ValidationError(exc.errors) from None

    def run_validators(self, value: Any) -> None:
        # No validators and no read-only fields: the eight fields only describe the schema
        # (OpenAPI), so they are not built for every request just to find nothing to run.
        if self.validators:
            super().run_validators(value)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return {key: instance.get(key) for key in FEATURE_KEYS}


MAX_FAILED_ROWS = 10  # rows of a batch whose errors are described; further ones are counted


class InstancesField(serializers.ListField):
    """1 to MAX_INSTANCES feature objects; the length is checked before any row is validated."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("child", FeaturesSerializer())
        kwargs.setdefault("min_length", 1)
        kwargs.setdefault("max_length", MAX_INSTANCES)
        kwargs.setdefault("help_text", f"1 to {MAX_INSTANCES} people, answered in the same order.")
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> list[dict[str, float | None]]:
        if isinstance(data, list) and not 1 <= len(data) <= MAX_INSTANCES:
            raise serializers.ValidationError(f"Give a list of 1 to {MAX_INSTANCES} feature objects; got {len(data)}.")
        if not isinstance(data, list):
            return super().to_internal_value(data)  # DRF's "Expected a list" error
        # Every row is checked, but only the first MAX_FAILED_ROWS failing rows are described; the
        # rest are counted, so the error body stays small whatever the batch holds.
        cleaned: list[dict[str, float | None]] = []
        errors: dict[int | str, Any] = {}
        failed = 0
        for i, row in enumerate(data):
            try:
                cleaned.append(self.child.run_validation(row))
            except serializers.ValidationError as exc:
                failed += 1
                if failed <= MAX_FAILED_ROWS:
                    errors[i] = exc.detail
        if failed > MAX_FAILED_ROWS:
            errors["non_field_errors"] = [f"And {failed - MAX_FAILED_ROWS} more instances with errors."]
        if errors:
            # Rows keyed by index, as DRF's own ListField does; the stub only allows str keys.
            raise serializers.ValidationError(errors)  # type: ignore[arg-type]
        return cleaned


class ContributionsSerializer(serializers.Serializer):
    """Each feature's additive contribution to the log-odds, relative to the average person."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            f.key: serializers.FloatField(label=f.label, help_text=f"Contribution of {f.label} to the log-odds.")
            for f in FEATURES
        }


class PointsSerializer(serializers.Serializer):
    """Each feature's effect in percentage points of risk against the average person in the study."""

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            f.key: serializers.FloatField(
                label=f.label,
                help_text=f"Risk of the average person with only {f.label} changed to this value, minus the "
                "average person's risk, in percentage points (exact; the points need not add up).",
            )
            for f in FEATURES
        }


class ModelRefSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()


class PredictionSerializer(serializers.Serializer):
    """One person's risk, its explanation and the id of the stored assessment."""

    id = serializers.UUIDField(help_text="The stored assessment (a random UUID); use it to record the outcome later.")
    risk = serializers.FloatField(min_value=0, max_value=1, help_text="Probability of diabetes within five years.")
    band = serializers.ChoiceField(choices=["low", "moderate", "high"])
    label = serializers.IntegerField(  # type: ignore[assignment]  # a declared field: DRF's metaclass moves it off the class
        min_value=0, max_value=1, help_text="1 when risk >= threshold, else 0."
    )
    threshold = serializers.FloatField(min_value=0, max_value=1)
    contributions = ContributionsSerializer()
    points = PointsSerializer()
    imputed = serializers.ListField(
        child=serializers.ChoiceField(choices=list(FEATURE_KEYS)), help_text="Features that were estimated."
    )
    warnings = serializers.ListField(
        child=serializers.ChoiceField(choices=WARNING_CODES),
        help_text="extrapolated:<key>: a value outside the training range (held at its edge). "
        + " ".join(f"{c.code}: {c.message} Source: {c.source}" for c in CLINICAL_CUTOFFS),
    )
    model = ModelRefSerializer()


class ErrorsSerializer(serializers.Serializer):
    """Every error of the REST API: field key (or non_field_errors) to messages."""

    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))  # type: ignore[assignment]  # a declared field: DRF's metaclass moves it off the class
