import math
from decimal import Decimal

import pytest

from ml_engine.schema import (
    FEATURE_KEYS,
    FEATURES,
    FEATURES_BY_KEY,
    MAX_UNKNOWN_REPORTED,
    FeatureValidationError,
    clean_features,
)


def test_keys_are_the_contract_order():
    assert FEATURE_KEYS == (
        "pregnancies",
        "glucose",
        "blood_pressure",
        "skin_thickness",
        "insulin",
        "bmi",
        "diabetes_pedigree",
        "age",
    )


def test_every_feature_is_fully_described():
    for f in FEATURES:
        assert f.label and f.unit and f.description.endswith(".")
        assert f.min < f.max and f.step > 0


def test_valid_partial_input_fills_missing_with_none():
    cleaned = clean_features({"glucose": 120, "age": 33, "bmi": None})
    assert cleaned["glucose"] == 120.0 and cleaned["age"] == 33
    assert [k for k, v in cleaned.items() if v is None] == [
        "pregnancies",
        "blood_pressure",
        "skin_thickness",
        "insulin",
        "bmi",
        "diabetes_pedigree",
    ]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("120", "got a string"),
        (True, "got a boolean"),
        (False, "got a boolean"),
        ([120], "got a list"),
        ({"v": 1}, "got an object"),
        (math.nan, "got nan"),
        (math.inf, "got inf"),
        (-math.inf, "got -inf"),
        (Decimal("NaN"), "got NaN"),
        (19.9, "got 19.9"),
        (600.1, "got 600.1"),
        (10**400, "got 1000"),
    ],
)
def test_bad_values_name_field_and_range(value, needle):
    with pytest.raises(FeatureValidationError) as info:
        clean_features({"glucose": value})
    (message,) = info.value.errors["glucose"]
    assert message.startswith("Plasma glucose (2-h OGTT) must be a number from 20 to 600 mg/dL")
    assert needle in message


def test_integer_features_refuse_fractions():
    with pytest.raises(FeatureValidationError) as info:
        clean_features({"age": 33.5, "pregnancies": 2.0})
    assert list(info.value.errors) == ["age"]
    assert "whole number from 18 to 120" in info.value.errors["age"][0]


def test_unknown_keys_are_listed_with_the_known_ones():
    with pytest.raises(FeatureValidationError) as info:
        clean_features({"glucose": 100, "weight": 80})
    assert "Unknown feature weight" in info.value.errors["weight"][0]
    assert "glucose" in info.value.errors["weight"][0]


def test_only_a_few_unknown_keys_are_named_and_the_rest_counted():
    raw = {"glucose": 100, **{f"unknown_{i}_" + "x" * 100: 1 for i in range(480)}}
    with pytest.raises(FeatureValidationError) as info:
        clean_features(raw)
    errors = info.value.errors
    named = [key for key in errors if key != "non_field_errors"]
    assert len(named) == MAX_UNKNOWN_REPORTED and all(len(key) <= 40 for key in named)
    assert errors["non_field_errors"] == [f"{480 - MAX_UNKNOWN_REPORTED} more unknown features not listed."]
    assert len(str(errors)) < 1500  # bounded whatever the input holds


@pytest.mark.parametrize("raw", [{}, {"glucose": None}, dict.fromkeys(FEATURE_KEYS)])
def test_empty_input_is_refused(raw):
    with pytest.raises(FeatureValidationError) as info:
        clean_features(raw)
    assert "at least one feature" in info.value.errors["non_field_errors"][0]


@pytest.mark.parametrize("raw", [None, [], "glucose", 5])
def test_non_objects_are_refused(raw):
    with pytest.raises(FeatureValidationError) as info:
        clean_features(raw)
    assert "non_field_errors" in info.value.errors


def test_all_errors_are_reported_at_once():
    with pytest.raises(FeatureValidationError) as info:
        clean_features({"glucose": -1, "bmi": "x", "age": 500})
    assert set(info.value.errors) == {"glucose", "bmi", "age"}


def test_range_edges_are_accepted():
    for f in FEATURES:
        assert clean_features({f.key: f.min})[f.key] == f.min
        assert clean_features({f.key: f.max})[f.key] == f.max
    assert FEATURES_BY_KEY["pregnancies"].min == 0  # a real zero, not "missing"
