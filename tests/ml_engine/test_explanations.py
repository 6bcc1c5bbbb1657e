"""What the prediction service says beyond the risk: points of risk and clinical warnings."""

import json
import math

import pytest

from ml_engine.models import Interface
from ml_engine.schema import CLINICAL_CUTOFFS, FEATURE_KEYS, WARNING_CODES
from ml_engine.services import clinical_warnings, predict
from tests.samples import PERSON


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_points_are_exact_against_the_baseline_person(served_model):
    prediction = predict(features=PERSON, interface=Interface.REST)
    baseline = served_model.metadata["baseline"]["logit"]
    # The additive model: the baseline log-odds plus the contributions is the person's log-odds ...
    assert sigmoid(baseline + sum(prediction.contributions.values())) == pytest.approx(prediction.risk, abs=1e-9)
    # ... and each feature's points are the baseline person with only that value changed.
    for key in FEATURE_KEYS:
        expected = 100 * (sigmoid(baseline + prediction.contributions[key]) - sigmoid(baseline))
        assert prediction.points[key] == pytest.approx(expected, abs=1e-9)
        assert (prediction.points[key] > 0) == (prediction.contributions[key] > 0)


@pytest.mark.parametrize(
    ("changes", "codes"),
    [
        ({"glucose": 199}, []),
        ({"glucose": 200}, ["clinical:glucose_diagnostic"]),  # ADA: >= 200 mg/dL
        ({"blood_pressure": 120}, []),  # ACC/AHA 2017: crisis is diastolic > 120
        ({"blood_pressure": 121}, ["clinical:blood_pressure_crisis"]),
        ({"glucose": 550, "blood_pressure": 130}, ["clinical:glucose_diagnostic", "clinical:blood_pressure_crisis"]),
        ({"glucose": None, "blood_pressure": None}, []),
    ],
)
def test_clinical_cut_offs(changes, codes):
    assert clinical_warnings({**PERSON, **changes}) == codes


def test_every_interface_carries_clinical_warnings(served_model):
    prediction = predict(features={**PERSON, "glucose": 550}, interface=Interface.REST)
    assert "clinical:glucose_diagnostic" in prediction.warnings
    assert "extrapolated:glucose" in prediction.warnings  # 550 is also beyond the training data
    assert set(prediction.warnings) <= set(WARNING_CODES)


def test_rest_answers_with_points_and_clinical_warnings(client, served_model):
    response = client.post(
        "/api/v1/predict", data=json.dumps({"features": {**PERSON, "glucose": 550}}), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body["points"]) == set(FEATURE_KEYS)
    assert "clinical:glucose_diagnostic" in body["warnings"]


def test_the_openapi_document_lists_the_warning_codes_and_points(client, served_model):
    schema = client.get("/api/schema/?format=json").json()
    prediction = schema["components"]["schemas"]["Prediction"]
    assert "points" in prediction["properties"]
    text = json.dumps(schema)
    for cutoff in CLINICAL_CUTOFFS:
        assert cutoff.code in text and cutoff.source.split(":")[0] in text


def test_a_batch_explains_each_person_as_one_prediction_does(served_model):
    from ml_engine.services import predict_many

    people = [PERSON, {**PERSON, "glucose": 250, "blood_pressure": 125}, {"age": 110}]
    for one, many in zip(
        (predict(features=p, interface=Interface.REST) for p in people),
        predict_many(instances=people, interface=Interface.REST),
        strict=True,
    ):
        assert many.warnings == one.warnings
        assert many.points == pytest.approx(one.points, abs=1e-9)
