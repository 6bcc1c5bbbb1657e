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
    WARNING_CODES,
    Feature,
    FeatureValidationError,
    clean_features,
    value_error,
)
from ml_engine.services import MAX_INSTANCES


class StrictSerializer(serializers.Serializer):
    """A serializer that refuses keys it does not declare (published as additionalProperties: false)."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = [key for key in data if key not in self.fields]
            if unknown:
                expected = ", ".join(self.fields)
                raise serializers.ValidationError(
                    {str(key)[:40]: [f"Unknown field {str(key)[:40]}; expected: {expected}."] for key in unknown}
                )
        return super().to_internal_value(data)


def _feature_help(feature: Feature) -> str:
    return (
        f"{feature.label} ({feature.unit}): {feature.description} "
        f"Allowed: {feature.range_text}; null or absent is imputed."
    )


class _FeatureMixin:
    """A feature's value: a JSON number within the schema's range, checked by ``value_error``."""

    feature: Feature

    def to_internal_value(self, data: Any) -> float | int:
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
        try:
            return clean_features(data)
        except FeatureValidationError as exc:
            raise serializers.ValidationError(exc.errors) from None

    def to_representation(self, instance: Any) -> dict[str, Any]:
        return {key: instance.get(key) for key in FEATURE_KEYS}


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
        return super().to_internal_value(data)


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

    id = serializers.IntegerField(help_text="The stored assessment; use it to record the outcome later.")
    risk = serializers.FloatField(min_value=0, max_value=1, help_text="Probability of diabetes within five years.")
    band = serializers.ChoiceField(choices=["low", "moderate", "high"])
    label = serializers.IntegerField(min_value=0, max_value=1, help_text="1 when risk >= threshold, else 0.")
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

    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
