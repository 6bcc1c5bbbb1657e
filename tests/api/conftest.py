"""Fixtures for the API tests in process: no throttling unless a test asks, a JSON request and
the check of the API's error shape, and one stored assessment."""

import json

import pytest
from django.core.cache import cache

from project import throttling
from tests.samples import PERSON


@pytest.fixture(autouse=True)
def no_throttling(settings):
    """API tests are never throttled by accident; test_rest proves the throttle on its own."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": None}}
    settings.THROTTLE_V2_ROWS = None
    cache.clear()
    throttling.reset()
    yield
    cache.clear()
    throttling.reset()


def _post_json(client, url, body, *, method="post", content_type="application/json", **extra):
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return getattr(client, method)(url, data=data, content_type=content_type, **extra)


def _assert_errors(response, status=400) -> dict[str, list[str]]:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"errors"}
    assert body["errors"] and all(
        isinstance(key, str) and isinstance(messages, list) and messages and all(isinstance(m, str) for m in messages)
        for key, messages in body["errors"].items()
    )
    return body["errors"]


@pytest.fixture
def post_json():
    """``post_json(client, url, body, method="post", content_type="application/json", **extra)``:
    ``body`` sent as JSON (a str or bytes body is sent as it is: bodies that are not JSON)."""
    return _post_json


@pytest.fixture
def assert_errors():
    """``assert_errors(response, status=400)``: the response is the API's error shape
    (``{"errors": {key: [message, ...]}}``, JSON) with ``status``; returns the errors."""
    return _assert_errors


@pytest.fixture
def assessment_id(client, served_model):
    """The public id of one assessment stored by a REST prediction for PERSON."""
    return _post_json(client, "/api/v1/predict", {"features": PERSON}).json()["id"]
