import math
from decimal import Decimal

import numpy as np
import pytest

from ml_engine.schema import (
    FEATURE_KEYS,
    FEATURES,
    FEATURES_BY_KEY,
    MAX_UNKNOWN_REPORTED,
    FeatureValidationError,
    clean_features,
    clean_matrix,
    invalid_cells,
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
    assert errors["non_field_errors"] == [f"And {480 - MAX_UNKNOWN_REPORTED} more unknown features."]
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


BATCH_CASES = [
    {"glucose": "120"},
    {"glucose": True},
    {"glucose": 19.9},
    {"glucose": 10**400},
    {"age": 33.5},
    {"weight": 80, "glucose": 100},
    {},
    {"glucose": None},
    [],
    "glucose",
    {"glucose": math.inf},
    {"bmi": Decimal("NaN")},
]


@pytest.mark.parametrize("bad", BATCH_CASES)
def test_clean_matrix_names_the_instance_with_clean_features_words(bad):
    good = {"glucose": 120, "age": 33}
    with pytest.raises(FeatureValidationError) as single:
        clean_features(bad)
    with pytest.raises(FeatureValidationError) as batch:
        clean_matrix([good, bad, good])
    assert batch.value.errors == {f"instances[1].{key}": messages for key, messages in single.value.errors.items()}


def test_clean_matrix_returns_the_values_with_nan_for_missing_ones():
    X = clean_matrix([{"glucose": 120, "age": 33}, {"bmi": Decimal("31.5"), "pregnancies": 2.0}])
    assert X.shape == (2, 8)
    assert X[0, 1] == 120 and X[0, 7] == 33 and np.isnan(X[0, [0, 2, 3, 4, 5, 6]]).all()
    assert X[1, 5] == 31.5 and X[1, 0] == 2


def test_clean_matrix_builds_no_message_for_a_valid_batch(monkeypatch):
    from ml_engine import schema

    def refuse(*args, **kwargs):
        raise AssertionError("a valid batch must not be checked value by value")

    monkeypatch.setattr(schema, "clean_features", refuse)
    monkeypatch.setattr(schema, "value_error", refuse)
    rows = [{f.key: f.min for f in FEATURES}, {f.key: f.max for f in FEATURES}] * 500
    assert schema.clean_matrix(rows).shape == (1000, 8)


def test_invalid_cells_follow_value_error():
    X = np.array([[f.min for f in FEATURES], [f.max for f in FEATURES]], dtype=float)
    assert len(invalid_cells(X, allow_missing=False)) == 0
    X[0, 1], X[1, 0], X[1, 7], X[0, 5] = 19.9, 2.5, math.inf, math.nan
    assert invalid_cells(X, allow_missing=False).tolist() == [[0, 1], [0, 5], [1, 0], [1, 7]]
    assert invalid_cells(X, allow_missing=True).tolist() == [[0, 1], [1, 0], [1, 7]]
