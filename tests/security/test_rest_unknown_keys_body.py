"""200,000 unknown keys in ``features`` or many in every row of ``instances``: a small 400 that
names a few keys and counts the rest, and nothing stored."""

import json

import requests

MAX_ERROR_BODY = 8 * 1024
LIMIT = 2_621_440


def post(url: str, body: dict) -> requests.Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    assert len(data) < LIMIT  # within the body limit: this is about the keys, not the size
    return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=60)


def test_200000_unknown_feature_keys_get_a_small_400(daphne):
    body = {"features": {f"k{i}": 1 for i in range(200_000)}}
    response = post(f"{daphne.http}/api/v1/predict", body)
    assert response.status_code == 400
    assert len(response.content) < MAX_ERROR_BODY
    errors = response.json()["errors"]
    named = [key for key in errors if key.startswith("features.")]
    assert named == ["features.k0", "features.k1", "features.k2"]
    assert errors["features"] == ["And 199997 more unknown features."]


def test_every_row_full_of_unknown_keys_gets_a_small_400(daphne):
    body = {"instances": [{f"x{i}": 1 for i in range(200)} for _ in range(1000)]}
    response = post(f"{daphne.http}/api/v1/predict", body)
    assert response.status_code == 400
    assert len(response.content) < MAX_ERROR_BODY
    errors = response.json()["errors"]
    assert errors["instances"] == ["And 990 more instances with errors."]
    assert errors["instances[0]"] == ["And 197 more unknown features."]
    assert "instances[10]" not in errors


def test_unknown_top_level_keys_are_bounded_too(daphne):
    body = {"features": {"glucose": 100}, **{f"extra{i}": 1 for i in range(50_000)}}
    response = post(f"{daphne.http}/api/v1/predict", body)
    assert response.status_code == 400
    assert len(response.content) < MAX_ERROR_BODY
    assert response.json()["errors"]["non_field_errors"] == ["And 49997 more unknown fields."]
