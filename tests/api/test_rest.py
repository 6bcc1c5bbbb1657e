import json
import re

import pytest
from rest_framework.exceptions import ValidationError

from api import rest
from ml_engine.inference import AdditiveModel
from ml_engine.models import Assessment, Interface, ModelVersion
from ml_engine.registry import active_model
from ml_engine.schema import FEATURE_KEYS, FEATURES
from ml_engine.services import MAX_INSTANCES, predict, predict_many
from tests.samples import PERSON

PREDICT = "/api/v1/predict"
PREDICTION_KEYS = {
    "id",
    "risk",
    "band",
    "label",
    "threshold",
    "contributions",
    "points",
    "imputed",
    "warnings",
    "model",
}


# --- POST /api/v1/predict: one person --------------------------------------------------------


def test_one_prediction_has_the_contract_shape_and_is_stored(client, served_model, post_json):
    response = post_json(client, PREDICT, {"features": PERSON})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == PREDICTION_KEYS
    expected = predict(features=PERSON, interface=Interface.REST).as_dict()
    assert body["risk"] == pytest.approx(expected["risk"], abs=1e-12)
    assert {k: body[k] for k in ("band", "label", "threshold", "imputed", "warnings", "model")} == {
        k: expected[k] for k in ("band", "label", "threshold", "imputed", "warnings", "model")
    }
    assert list(body["contributions"]) == list(FEATURE_KEYS)
    assert body["model"] == {"name": "diabetes", "version": served_model.version}
    stored = Assessment.objects.get(public_id=body["id"])
    assert stored.interface == "rest" and stored.risk == pytest.approx(body["risk"])
    assert stored.features == {key: float(v) if key not in ("pregnancies", "age") else v for key, v in PERSON.items()}


def test_missing_and_null_features_are_imputed(client, served_model, post_json):
    body = post_json(client, PREDICT, {"features": {"glucose": 150, "bmi": None}}).json()
    assert body["imputed"] == [k for k in FEATURE_KEYS if k != "glucose"]
    assert Assessment.objects.get(public_id=body["id"]).features["bmi"] is None


# --- POST /api/v1/predict: many people ----------------------------------------------------------


def test_batch_keeps_order_stores_each_and_matches_the_service(client, served_model, post_json):
    rows = [PERSON, {"glucose": 90}, {"bmi": 45.0, "age": 60}, {"insulin": 500, "glucose": 199}]
    response = post_json(client, PREDICT, {"instances": rows})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"predictions"}
    predictions = body["predictions"]
    expected = predict_many(instances=rows, interface=Interface.REST)
    assert [p["risk"] for p in predictions] == pytest.approx([e.risk for e in expected], abs=1e-12)
    for p, row in zip(predictions, rows, strict=True):
        assert set(p) == PREDICTION_KEYS
        assert p["risk"] == pytest.approx(predict(features=row, interface=Interface.REST).risk, abs=1e-9)
    ids = [p["id"] for p in predictions]
    assert len(set(ids)) == len(rows)
    stored = {str(a.public_id): a for a in Assessment.objects.filter(public_id__in=ids)}
    assert [stored[i].risk for i in ids] == pytest.approx([p["risk"] for p in predictions])
    assert all(a.interface == "rest" for a in stored.values())


def test_batch_is_one_vectorised_model_call(client, served_model, monkeypatch, post_json):
    calls = {"matrix": [], "one": 0}
    original = AdditiveModel.predict_matrix

    def spy_matrix(self, X, **options):
        calls["matrix"].append(len(X))
        return original(self, X, **options)

    def spy_one(self, values):
        calls["one"] += 1
        raise AssertionError("a batch must not predict row by row")

    monkeypatch.setattr(AdditiveModel, "predict_matrix", spy_matrix)
    monkeypatch.setattr(AdditiveModel, "predict_one", spy_one)
    response = post_json(client, PREDICT, {"instances": [PERSON] * 250})
    assert response.status_code == 200
    assert calls == {"matrix": [250], "one": 0}


def test_batch_of_the_maximum_size_is_answered(client, served_model, post_json):
    response = post_json(client, PREDICT, {"instances": [{"glucose": 80 + i % 100} for i in range(MAX_INSTANCES)]})
    assert response.status_code == 200
    assert len(response.json()["predictions"]) == MAX_INSTANCES


def test_too_many_instances_is_refused_before_any_work(client, served_model, post_json, assert_errors):
    errors = assert_errors(post_json(client, PREDICT, {"instances": [PERSON] * (MAX_INSTANCES + 1)}))
    assert errors == {"instances": [f"Give a list of 1 to {MAX_INSTANCES} feature objects; got {MAX_INSTANCES + 1}."]}
    assert not Assessment.objects.exists()


def test_batch_errors_name_the_instance_and_store_nothing(client, served_model, post_json, assert_errors):
    rows = [PERSON, {"glucose": 900}, {"glucose": "high", "bogus": 1}, {}]
    errors = assert_errors(post_json(client, PREDICT, {"instances": rows}))
    assert set(errors) == {"instances[1].glucose", "instances[2].glucose", "instances[2].bogus", "instances[3]"}
    assert "20 to 600 mg/dL" in errors["instances[1].glucose"][0]
    assert "got a string" in errors["instances[2].glucose"][0]
    assert not Assessment.objects.exists()


# --- bad bodies ---------------------------------------------------------------------------------

GLUCOSE = next(f for f in FEATURES if f.key == "glucose")


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ({"features": {**PERSON, "glucose": 900}}, "features.glucose", "from 20 to 600 mg/dL; got 900"),
        ({"features": {**PERSON, "glucose": 5}}, "features.glucose", "from 20 to 600 mg/dL"),
        ({"features": {**PERSON, "glucose": "148"}}, "features.glucose", "got a string"),
        ({"features": {**PERSON, "glucose": True}}, "features.glucose", "got a boolean"),
        ({"features": {**PERSON, "glucose": [148]}}, "features.glucose", "got a list"),
        ({"features": {**PERSON, "glucose": {"v": 1}}}, "features.glucose", "got an object"),
        ({"features": {**PERSON, "age": 50.5}}, "features.age", "whole number from 18 to 120"),
        ('{"features": {"glucose": 1e400}}', "features.glucose", "got inf"),
        ({"features": {**PERSON, "cholesterol": 5}}, "features.cholesterol", "Unknown feature cholesterol"),
        ({"features": {}}, "features", "at least one feature"),
        ({"features": {"glucose": None}}, "features", "at least one feature"),
        ({"features": [148, 72]}, "features", "must be an object"),
        ({"features": "glucose=148"}, "features", "must be an object"),
        ({"features": None}, "features", "may not be null"),
        ({"features": PERSON, "instances": [PERSON]}, "non_field_errors", "not both"),
        ({}, "non_field_errors", "Give either features"),
        ({"person": PERSON}, "person", "Unknown field person"),
        ({"instances": []}, "instances", "1 to 1000"),
        ({"instances": PERSON}, "instances", "list"),
        ([PERSON], "non_field_errors", "Expected a dictionary"),
        ("null", "non_field_errors", "No data provided"),
        (42, "non_field_errors", "Expected a dictionary"),
    ],
)
def test_invalid_bodies_name_the_field(client, served_model, body, key, fragment, post_json, assert_errors):
    errors = assert_errors(post_json(client, PREDICT, body))
    assert key in errors, errors
    assert fragment in " ".join(errors[key])
    assert not Assessment.objects.exists()


def test_range_messages_are_the_schemas(client, served_model, post_json, assert_errors):
    from ml_engine.schema import value_error

    errors = assert_errors(post_json(client, PREDICT, {"features": {"glucose": 900}}))
    assert errors == {"features.glucose": [value_error(GLUCOSE, 900)]}


@pytest.mark.parametrize(
    "raw",
    [
        '{"features": {"glucose": NaN}}',
        '{"features": {"glucose": Infinity}}',
        '{"features": {"glucose": -Infinity}}',
        '{"features": {"glucose": 148',
        "features=1",
        "",
        b"\xff\xfe{}",
        '{"features": {"glucose": 1' + "0" * 5000 + "}}",
        "[" * 100000 + "]" * 100000,
    ],
)
def test_bodies_that_are_not_json_are_400(client, served_model, raw, post_json, assert_errors):
    response = post_json(client, PREDICT, raw)
    errors = assert_errors(response)
    assert list(errors) == ["non_field_errors"]
    assert not Assessment.objects.exists()


def test_a_body_past_the_upload_limit_is_400(client, served_model, settings, post_json, assert_errors):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    errors = assert_errors(post_json(client, PREDICT, {"instances": [PERSON] * 20}))
    assert errors == {"non_field_errors": ["The body is larger than 1000 bytes."]}


def test_nan_literal_is_named(client, served_model, post_json, assert_errors):
    errors = assert_errors(post_json(client, PREDICT, '{"features": {"glucose": NaN}}'))
    assert "NaN" in errors["non_field_errors"][0]


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml"],
)
def test_wrong_content_type_is_400(client, served_model, content_type, assert_errors):
    response = client.post(PREDICT, data=json.dumps({"features": PERSON}), content_type=content_type)
    errors = assert_errors(response)
    assert "application/json" in errors["non_field_errors"][0]


def test_form_encoded_body_is_400(client, served_model, assert_errors):
    errors = assert_errors(client.post(PREDICT, {"features": "x"}))  # multipart, as a browser form posts
    assert list(errors) == ["non_field_errors"]


def test_get_on_predict_is_405_in_the_contract_shape(client, served_model, assert_errors):
    errors = assert_errors(client.get(PREDICT), status=405)
    assert "GET" in errors["non_field_errors"][0]


def test_no_model_is_503_with_a_clear_error(client, no_active_model, post_json, assert_errors):
    errors = assert_errors(post_json(client, PREDICT, {"features": PERSON}), status=503)
    assert "No model is active" in errors["non_field_errors"][0]
    errors = assert_errors(client.get("/api/v1/model"), status=503)
    assert "No model is active" in errors["non_field_errors"][0]
    assert not Assessment.objects.exists()


# --- GET /api/v1/model --------------------------------------------------------------------------


def test_model_describes_schema_ranges_metrics_and_versions(client, served_model):
    response = client.get("/api/v1/model")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "diabetes" and body["version"] == served_model.version
    assert body["threshold"] == served_model.threshold and body["bands"] == served_model.bands
    assert body["trained_at"] == served_model.metadata["created"]
    assert {"roc_auc", "brier", "accuracy"} <= set(body["metrics"])
    assert [f["key"] for f in body["features"]] == list(FEATURE_KEYS)
    for item, feature in zip(body["features"], FEATURES, strict=True):
        assert {k: item[k] for k in ("label", "unit", "min", "max", "description")} == {
            "label": feature.label,
            "unit": feature.unit,
            "min": feature.min,
            "max": feature.max,
            "description": feature.description,
        }
        assert [item["train_min"], item["train_max"]] == served_model.training_ranges[feature.key]
    active = [v for v in body["versions"] if v["active"]]
    assert [v["version"] for v in active] == [served_model.version]
    assert {"created", "activated_at", "algorithm"} <= set(active[0])
    assert all(set(a) == {"version", "activated_at"} for a in body["activations"])


def test_model_reports_pooled_calibration_beside_its_noise_floor(client, served_model):
    body = client.get("/api/v1/model").json()
    c = body["calibration"]
    assert c == served_model.metadata["calibration"]
    assert c["rows"] == 768 and "10 equal-width bins" in c["binning"]
    assert 0 < c["ece_floor"]["mean"] < c["ece_floor"]["p95"] and c["ece_range"][0] <= c["ece"] <= c["ece_range"][1]
    assert c["slope"]["low"] < c["slope"]["estimate"] < c["slope"]["high"]
    b = c["brier"]
    terms = b["reliability"] - b["resolution"] + b["uncertainty"] + b["within_bin"]
    assert terms == pytest.approx(b["brier"], abs=3e-4)
    assert body["metrics"]["ece_pooled"] == c["ece"] and body["metrics"]["ece_floor"] == c["ece_floor"]["mean"]
    assert "ece" not in body["metrics"]  # the per-fold mean is gone: it measured the fold size


def test_model_of_a_version_stored_before_pooled_calibration(client, served_model):

    record = ModelVersion.objects.get(version=served_model.version)
    old_metrics = {"roc_auc": 0.85, "brier": 0.15, "ece": 0.073, "ece_std": 0.017}
    record.metadata = {k: v for k, v in record.metadata.items() if k != "calibration"} | {"metrics": old_metrics}
    record.metrics = old_metrics
    record.save(update_fields=["metadata", "metrics"])
    active_model.reset()
    try:
        response = client.get("/api/v1/model")
        body = response.json()
        assert response.status_code == 200 and body["calibration"] is None
        # The per-fold ECE such a version carries is not shown: it measured the fold size.
        assert body["metrics"] == {"roc_auc": 0.85, "brier": 0.15}
        (listed,) = [v for v in body["versions"] if v["version"] == served_model.version]
        assert listed["metrics"] == {"roc_auc": 0.85, "brier": 0.15}
    finally:
        active_model.reset()


# --- POST /api/v1/assessments/<id>/outcome ------------------------------------------------------


@pytest.mark.parametrize("outcome", [0, 1])
def test_outcome_is_recorded(client, assessment_id, outcome, outcomes_key, post_json):
    response = post_json(client, f"/api/v1/assessments/{assessment_id}/outcome", {"outcome": outcome}, **outcomes_key)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == assessment_id and body["outcome"] == outcome and body["outcome_recorded_at"]
    stored = Assessment.objects.get(public_id=assessment_id)
    assert stored.outcome == outcome and stored.outcome_recorded_at is not None


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ({"outcome": True}, "outcome"),
        ({"outcome": False}, "outcome"),
        ({"outcome": "1"}, "outcome"),
        ({"outcome": 2}, "outcome"),
        ({"outcome": -1}, "outcome"),
        ({"outcome": 1.0}, "outcome"),
        ({"outcome": None}, "outcome"),
        ({}, "outcome"),
        ({"outcome": 1, "note": "x"}, "note"),
        ([1], "non_field_errors"),
        ("{not json", "non_field_errors"),
        ('{"outcome": NaN}', "non_field_errors"),
    ],
)
def test_bad_outcomes_are_400(client, assessment_id, body, key, outcomes_key, post_json, assert_errors):
    errors = assert_errors(post_json(client, f"/api/v1/assessments/{assessment_id}/outcome", body, **outcomes_key))
    assert key in errors
    assert Assessment.objects.get(public_id=assessment_id).outcome is None


@pytest.mark.parametrize(
    "ident",
    ["999999", "1", "0", "abc", "-3", "1e3", "99999999999999999999999999", "7f0c2a9e-3b5d-4c1e-9a8f-2d6b4e1c0a57"],
)
def test_unknown_assessment_is_404(client, served_model, ident, outcomes_key, post_json, assert_errors):
    # Existing rows make integer keys real: they still find nothing, only the public id does.
    post_json(client, PREDICT, {"features": PERSON})
    response = post_json(client, f"/api/v1/assessments/{ident}/outcome", {"outcome": 1}, **outcomes_key)
    errors = assert_errors(response, status=404)
    assert re.match(r"No assessment ", errors["non_field_errors"][0])


# --- throttling ---------------------------------------------------------------------------------


def test_anonymous_clients_are_throttled_with_retry_after(client, served_model, settings, post_json, assert_errors):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": "2/minute"}}
    assert client.get("/api/v1/model").status_code == 200
    assert post_json(client, PREDICT, {"features": PERSON}).status_code == 200
    response = client.get("/api/v1/model")
    errors = assert_errors(response, status=429)
    assert 0 < int(response["Retry-After"]) <= 60
    assert "Too many requests" in errors["non_field_errors"][0]
    # a client that invents X-Forwarded-For headers is still the same client
    assert client.get("/api/v1/model", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 429


def test_empty_throttle_rate_turns_throttling_off(client, served_model, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None}}
    assert all(client.get("/api/v1/model").status_code == 200 for _ in range(5))


# --- OpenAPI document and Swagger UI --------------------------------------------------------------


def test_openapi_document_describes_every_feature(client, served_model):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert {"/api/v1/predict", "/api/v1/model", "/api/v1/assessments/{assessment_id}/outcome"} <= set(schema["paths"])
    features = schema["components"]["schemas"]["FeaturesRequest"]
    assert features["additionalProperties"] is False
    for feature in FEATURES:
        prop = features["properties"][feature.key]
        assert prop["minimum"] == feature.min and prop["maximum"] == feature.max
        assert prop["type"] == ("integer" if feature.integer else "number")
        assert feature.label in prop["description"] and feature.unit in prop["description"]
        assert feature.description in prop["description"] and feature.range_text in prop["description"]
    predict_op = schema["paths"]["/api/v1/predict"]["post"]
    assert {"200", "400", "429", "503"} <= set(predict_op["responses"])
    assert predict_op["requestBody"]["content"]["application/json"]["examples"]
    assert predict_op["responses"]["200"]["content"]["application/json"]["examples"]


def test_swagger_ui_is_served_from_local_static_files(client, served_model):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "cdn" not in html.lower() and "https://" not in html
    scripts = re.findall(r'src="([^"]+\.js)"', html)
    assert scripts and all(src.startswith("/static/") for src in scripts)
    for src in scripts:
        assert client.get(src).status_code == 200


def test_a_capped_object_still_counts_every_unknown_key_and_keeps_known_ones(
    client, served_model, post_json, assert_errors
):
    # The parser keeps 64 members of a large object plus the keys a body may use; the count stays exact.
    features = {f"x{i}": 1 for i in range(100)} | {"glucose": 120}
    errors = assert_errors(post_json(client, PREDICT, {"features": features}))
    assert errors["features"] == ["And 97 more unknown features."]
    assert [key for key in errors if key.startswith("features.")] == ["features.x0", "features.x1", "features.x2"]


BODIES = [
    {"features": PERSON},
    {"features": {**PERSON, "insulin": None}},
    {"features": {"glucose": 0, "age": 21}},
    {"features": {"glucose": 199.0, "bmi": 67.1, "pregnancies": 17}},
    {"features": {"pregnancies": 2.0}},
    {"features": {"pregnancies": 2.5}},
    {"features": {"glucose": 900}},
    {"features": {"glucose": "120"}},
    {"features": {"glucose": True}},
    {"features": {"sugar": 1}},
    {"features": {f"k{i}": i for i in range(40)}},
    {"features": {}},
    {"features": None},
    {"features": [1, 2]},
    {"features": PERSON, "extra": 1},
]


@pytest.mark.parametrize("body", BODIES)
def test_validated_input_is_the_serializers_answer(served_model, body):
    """``validated_input`` takes a passing ``{"features": {...}}`` body from clean_features
    directly: its answer and its errors are always the serializer's."""
    serializer = rest.PredictApi.InputSerializer(data=body)
    if serializer.is_valid():
        assert rest.validated_input(body) == serializer.validated_data
    else:
        with pytest.raises(ValidationError) as refused:
            rest.validated_input(body)
        assert refused.value.detail == serializer.errors
