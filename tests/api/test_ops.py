"""Operations: /healthz, /readyz (model, database, channel layer) and /metrics."""

import json
import re

import pytest
from django.db import OperationalError
from django.test import Client

from api import ops
from ml_engine.models import ModelVersion
from ml_engine.registry import active_model
from tests.samples import PARTIAL_PERSON
from tests.servers import free_port

TOKEN = "operator-token-for-tests"


@pytest.fixture(autouse=True)
def operator_token(settings):
    """Tests run with DEBUG off, as production does: operations data needs the token."""
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOW = []


@pytest.fixture
def client():
    """An operator's client: it sends the bearer token (``anonymous`` does not)."""
    return Client(headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def anonymous():
    return Client()


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_ok_with_model_database_and_channel_layer(client, served_model):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ok",
        "checks": {"model": "ok", "database": "ok", "channel_layer": "ok"},
        "model_version": served_model.version,
    }


def test_readyz_is_503_without_a_model(client, served_model):
    ModelVersion.objects.update(is_active=False)
    active_model.reset()
    try:
        response = client.get("/readyz")
    finally:
        active_model.reset()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert "No model is active" in body["checks"]["model"]
    assert body["checks"]["database"] == "ok" and body["checks"]["channel_layer"] == "ok"


def test_readyz_reports_a_model_that_fails_to_load(client, served_model):
    record = ModelVersion.objects.get(version=served_model.version)
    ModelVersion.objects.filter(pk=record.pk).update(artifact_sha256="0" * 64)
    active_model.reset()
    try:
        body = client.get("/readyz").json()
    finally:
        ModelVersion.objects.filter(pk=record.pk).update(artifact_sha256=record.artifact_sha256)
        active_model.reset()
    assert body["status"] == "unavailable" and "does not match its recorded sha256" in body["checks"]["model"]


def test_readyz_is_503_when_the_database_does_not_answer(client, served_model, monkeypatch):
    def broken():
        raise OperationalError("could not connect to server")

    monkeypatch.setattr(ops, "_database_check", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["database"] == "OperationalError (details in the server log)"
    assert checks["channel_layer"] == "ok"


def test_readyz_is_503_when_the_channel_layer_does_not_answer(client, served_model, settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/0"]},  # nothing listens there
        }
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["model"] == "ok" and body["checks"]["database"] == "ok"
    assert body["checks"]["channel_layer"] != "ok" and body["checks"]["channel_layer"]


def test_readyz_times_out_a_hanging_channel_layer(client, served_model, monkeypatch):
    async def hang():
        import asyncio

        await asyncio.sleep(30)

    monkeypatch.setattr(ops, "_channel_layer_check", hang)
    monkeypatch.setattr(ops, "CHECK_TIMEOUT", 0.2)
    body = client.get("/readyz").json()
    assert body["checks"]["channel_layer"] == "the channel layer did not answer within 0.2 s"


def _sample(text: str, name: str, **labels: str) -> float:
    label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{re.escape(name)}{{{re.escape(label_text)}}} (\S+)$", text, re.MULTILINE)
    assert match, f"{name}{{{label_text}}} not in /metrics"
    return float(match.group(1))


def test_metrics_count_predictions_by_interface(client, served_model):
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    before = response.content.decode()
    for interface in ("form", "rest", "v2", "ws"):
        _sample(before, "diabetes_predictions_total", interface=interface)
        _sample(before, "diabetes_prediction_seconds_count", interface=interface)
    rest_before = _sample(before, "diabetes_predictions_total", interface="rest")
    v2_before = _sample(before, "diabetes_predictions_total", interface="v2")
    latency_before = _sample(before, "diabetes_prediction_seconds_count", interface="rest")

    client.post(
        "/api/v1/predict", data=json.dumps({"instances": [PARTIAL_PERSON] * 3}), content_type="application/json"
    ).json()
    client.post(
        "/v2/models/diabetes/infer",
        data=json.dumps(
            {
                "inputs": [
                    {
                        "name": "features",
                        "datatype": "FP64",
                        "shape": [1, 8],
                        "data": [2, 148, 72, 35, 120, 33.6, 0.6, 50],
                    }
                ]
            }
        ),
        content_type="application/json",
    )
    after = client.get("/metrics").content.decode()
    assert _sample(after, "diabetes_predictions_total", interface="rest") == rest_before + 3
    assert _sample(after, "diabetes_predictions_total", interface="v2") == v2_before + 1
    assert _sample(after, "diabetes_prediction_seconds_count", interface="rest") == latency_before + 1
    assert 'diabetes_prediction_seconds_bucket{interface="rest",le="0.001"}' in after
    for kind in ("live", "kiosk"):
        _sample(after, "diabetes_open_websockets", kind=kind)
    assert _sample(after, "diabetes_active_model_info", version=served_model.version) == 1


@pytest.mark.parametrize("url", ["/healthz", "/metrics"])
def test_ops_endpoints_only_answer_get(client, url):
    assert client.post(url).status_code == 405


# --- operators only (README: "Access and roles") -----------------------------------------------


def test_metrics_need_the_token_in_production(anonymous, settings):
    refused = anonymous.get("/metrics")
    assert refused.status_code == 401 and refused["WWW-Authenticate"].startswith("Bearer")
    assert b"diabetes_" not in refused.content
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}").status_code == 401
    allowed = anonymous.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert allowed.status_code == 200 and b"diabetes_predictions_total" in allowed.content


def test_metrics_without_a_token_setting_stay_closed(anonymous, settings):
    settings.METRICS_TOKEN = ""
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_metrics_allowlist_by_address(anonymous, settings):
    import ipaddress

    settings.METRICS_ALLOW = [ipaddress.ip_network("10.0.0.0/8")]
    assert anonymous.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert anonymous.get("/metrics", REMOTE_ADDR="192.0.2.1").status_code == 401
    assert anonymous.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="10.1.2.3").status_code == 401


def test_public_readyz_says_only_the_status(anonymous, served_model):
    response = anonymous.get("/readyz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert "no-store" in response["Cache-Control"]
    detailed = anonymous.get("/readyz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
    assert detailed["checks"] == {"model": "ok", "database": "ok", "channel_layer": "ok"}
    assert detailed["model_version"] == served_model.version


def test_staff_see_readyz_details(anonymous, served_model, django_user_model):
    anonymous.force_login(django_user_model.objects.create_user("ops", password="x", is_staff=True))
    assert set(anonymous.get("/readyz").json()) == {"status", "checks", "model_version"}


def test_readyz_details_never_name_hosts_or_ports(anonymous, served_model, settings):
    port = free_port()
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://db-host.internal:{port}/0"]},
        }
    }
    public = anonymous.get("/readyz")
    assert public.status_code == 503 and public.json() == {"status": "unavailable"}
    body = anonymous.get("/readyz", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    assert str(port) not in body and "db-host" not in body and "redis://" not in body
    assert json.loads(body)["checks"]["channel_layer"] != "ok"


def test_scrub_removes_locations():
    text = ops._scrub("Error 111 connecting to 127.0.0.1:6379 via redis://cache:6379/0 at db.internal:5432 in /srv/m/x")
    assert not re.search(r"\d{4}|127\.0|cache|internal|/srv", text), text
