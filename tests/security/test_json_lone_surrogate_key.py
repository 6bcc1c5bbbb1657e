"""A JSON key that is a lone surrogate (``{"\\ud800": 1}``) cannot be encoded as UTF-8; echoing
it in an error used to crash the renderer with a 500. It is a 400 in the API's error shape."""

import json

import pytest
import requests

SURROGATE_KEY = b'{"\\ud800": 1}'


@pytest.mark.parametrize(
    "body",
    [b'{"features": ' + SURROGATE_KEY + b"}", SURROGATE_KEY, b'{"features": {"glucose": "\\udfff"}}'],
)
def test_predict_answers_400_json(daphne, body):
    response = requests.post(
        f"{daphne.http}/api/v1/predict", data=body, headers={"Content-Type": "application/json"}, timeout=30
    )
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    assert set(json.loads(response.content)) == {"errors"}


def test_outcome_answers_in_the_error_shape_not_500(daphne):
    response = requests.post(
        f"{daphne.http}/api/v1/assessments/1/outcome",
        data=SURROGATE_KEY,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert 400 <= response.status_code < 500
    assert set(response.json()) == {"errors"}
    assert "Traceback" not in daphne.log()
