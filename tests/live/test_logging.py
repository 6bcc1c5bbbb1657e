"""No feature value reaches a log line: a whole session in process (every logger at DEBUG) and on
a real daphne process (its stdout and stderr, access log included)."""

from __future__ import annotations

import http.client
import json
import logging
import re
import urllib.parse

import pytest

from tests.servers import csrf_token, daphne_servers, share

# Unusual values: if one of them shows up in a log line, a measurement leaked.
UNUSUAL = {"glucose": 173.25, "bmi": 41.37, "age": 67, "diabetes_pedigree": 1.2345, "insulin": 287.5}
BAD = {"glucose": 617.25, "bmi": "41.37kg"}
MARKERS = ("173.25", "41.37", "1.2345", "287.5", "617.25")


def leaks(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(marker in line for marker in MARKERS)]


def captured(caplog) -> str:
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)


def test_form_and_rest_posts_log_no_feature_value(served_model, client, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="django.request")  # ERROR in the settings
    assert client.post("/predict/", UNUSUAL).status_code == 200
    assert client.post("/predict/", BAD).status_code == 400  # re-rendered with errors
    assert client.post("/api/v1/predict", {"features": UNUSUAL}, content_type="application/json").status_code == 200
    assert client.post("/api/v1/predict", {"features": BAD}, content_type="application/json").status_code == 400
    assert client.post("/api/v1/predict", "{", content_type="application/json").status_code == 400
    assert caplog.records  # the capture works (bad requests are logged as warnings)
    assert leaks(captured(caplog)) == []


async def test_a_live_session_in_process_logs_no_feature_value(served_model, caplog, monkeypatch, open_socket):
    caplog.set_level(logging.DEBUG)
    ws = await open_socket()
    assert (await ws.exchange({"type": "share", "board": "logs"}))["type"] == "shared"
    assert (await ws.exchange({"type": "update", "seq": 1, "features": UNUSUAL}))["type"] == "prediction"
    assert (await ws.exchange({"type": "update", "seq": 2, "features": BAD}))["type"] == "error"
    assert (await ws.exchange_text(json.dumps({"type": "update", "seq": 3, "features": [173.25]})))["type"] == "error"
    assert (await ws.exchange_text('{"glucose": 173.25,'))["code"] == "bad_json"

    # A failure inside the prediction is logged, without the state that caused it.
    def broken(values):
        raise RuntimeError("boom")

    monkeypatch.setattr(served_model.model, "predict_one", broken)
    assert (await ws.exchange({"type": "update", "seq": 4, "features": {"age": 68}}))["code"] == "internal_error"
    await ws.disconnect()

    assert "Live prediction failed" in captured(caplog)  # the capture works
    assert leaks(captured(caplog)) == []


@pytest.mark.slow
def test_a_session_on_daphne_logs_no_feature_value(server_env):
    server_env.extra["DJANGO_LOG_LEVEL"] = "DEBUG"
    with daphne_servers(server_env) as [server]:
        with server.connect("/ws/predict/?board=logs") as ws:  # a query must not reach the log either
            share(ws, "logs")
            for seq, features in enumerate([UNUSUAL, BAD, {"age": 70}]):
                ws.send(json.dumps({"type": "update", "seq": seq, "features": features}))
                assert json.loads(ws.recv(timeout=30))["seq"] == seq
            ws.send('{"bmi": 41.37')
            assert json.loads(ws.recv(timeout=30))["code"] == "bad_json"

        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", "/")
        response = conn.getresponse()
        page = response.read().decode()
        cookie = response.getheader("Set-Cookie").split(";", 1)[0]
        token = csrf_token(page)
        for values in (UNUSUAL, BAD):
            body = urllib.parse.urlencode({**values, "csrfmiddlewaretoken": token})
            headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie, "Referer": server.http}
            conn.request("POST", "/predict/", body=body, headers=headers)
            assert conn.getresponse().read() and True
        for values, status in ((UNUSUAL, 200), (BAD, 400)):
            conn.request(
                "POST",
                "/api/v1/predict",
                body=json.dumps({"features": values}),
                headers={"Content-Type": "application/json"},
            )
            response = conn.getresponse()
            response.read()
            assert response.status == status
        conn.close()
        log = server.log()
    # The access log is there, with paths only: health data never travels in URLs.
    assert '"POST /predict/"' in log and '"POST /api/v1/predict"' in log and "WSCONNECT /ws/predict/" in log
    for path in re.findall(r'"(?:GET|POST|WSCONNECT|WSDISCONNECT) ([^" ]+)', log):
        assert "?" not in path, path
    assert leaks(log) == [], leaks(log)
