"""The prediction route in front of Django (``api.asgi``, README: "The request path") answers every
request exactly as Django does: the same status, the same headers (security headers, content
security policy, caching, content length) and the same body; REST assessments are stored before
the answer. Each request below is sent once through the route and once through Django alone."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.db import OperationalError

from api import asgi as api_asgi
from api.asgi import PredictionRoute, close_connection
from ml_engine.models import Assessment, ModelVersion
from ml_engine.registry import active_model
from project import throttling
from tests.samples import PERSON

pytestmark = pytest.mark.django_db(transaction=True)

ROW = [2, 148, 72, 35, 120, 33.6, 0.627, 50]
REST = "/api/v1/predict"
V2 = "/v2/models/diabetes/infer"
JSON = ((b"content-type", b"application/json"),)


def v2_body(data: Any, shape: Any = None, **extra: Any) -> bytes:
    shape = shape if shape is not None else [len(data) // 8, 8]
    tensor = {"name": "features", "datatype": "FP64", "shape": shape, "data": data}
    return json.dumps({"inputs": [tensor], **extra}).encode()


class Recorder:
    """Django, noting whether the route handed it the request."""

    def __init__(self, django: ASGIHandler):
        self.django, self.calls = django, 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await self.django(scope, receive, send)


async def _call(app, path: str, body: bytes, headers, method: str, query: bytes, host: bytes) -> dict:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", host), *headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }
    sent = False

    async def receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays: Django cancels this after answering

    messages: list[dict] = []

    async def send(message):
        messages.append(message)

    await app(scope, receive, send)
    start = messages[0]
    return {
        "status": start["status"],
        "headers": {name.decode().lower(): value.decode("latin-1") for name, value in start["headers"]},
        "body": b"".join(m.get("body", b"") for m in messages[1:]),
    }


def call(app, path, body=b"", headers=JSON, method="POST", query=b"", host=b"127.0.0.1:8000") -> dict:
    return async_to_sync(_call)(app, path, body, headers, method, query, host)


def comparable(answer: dict) -> dict:
    """An answer with what differs between any two answers replaced: the Expires date and the
    random assessment ids."""
    headers = dict(answer["headers"])
    if "expires" in headers:
        headers["expires"] = "<date>"
    body: Any = answer["body"]
    if headers.get("content-type") == "application/json":
        body = json.loads(body)
        if isinstance(body, dict) and "id" in body and "risk" in body:
            body["id"] = "<id>"
        for prediction in body.get("predictions", []) if isinstance(body, dict) else []:
            prediction["id"] = "<id>"
    return {"status": answer["status"], "headers": headers, "body": body}


@pytest.fixture
def apps(served_model):
    django = ASGIHandler()
    recorder = Recorder(django)
    yield django, PredictionRoute(recorder, django=django), recorder
    close_connection()  # the writer thread's connection must not outlive the test database


def same_answer(apps, path, body=b"", *, answered_by_route=True, **kwargs) -> dict:
    django, route, recorder = apps
    expected = call(django, path, body, **kwargs)
    before = recorder.calls
    got = call(route, path, body, **kwargs)
    assert comparable(got) == comparable(expected)
    assert (recorder.calls == before) is answered_by_route
    return got


ANSWERED = [
    (REST, {"features": PERSON}),
    (REST, {"features": {**PERSON, "insulin": None}}),
    (REST, {"features": {"glucose": 900}}),
    (REST, {"features": {"glucose": "120", "sugar": 1}}),
    (REST, {"features": {}}),
    (REST, {}),
    (REST, {"features": PERSON, "instances": [PERSON]}),
    (REST, {"instances": [PERSON, {"glucose": 95, "bmi": 24.1, "age": 31}, {"glucose": 201}]}),
    (REST, {"instances": [PERSON, {"age": 200}, {"bmi": True}]}),
    (REST, {"instances": []}),
    (REST, {"features": {f"k{i}": i for i in range(100)}}),
    (REST, [1, 2]),
    (V2, v2_body(ROW)),
    (V2, v2_body(ROW + ROW, [2, 8], id="r1")),
    (V2, v2_body([ROW, ROW], [2, 8])),
    (V2, v2_body(ROW, outputs=[{"name": "label"}])),
    (V2, v2_body(ROW, outputs=[{"name": "risk", "parameters": {"binary_data": True}}])),
    (V2, v2_body([2, 900, 72, 35, 120, 33.6, 0.627, 50.5])),
    (V2, v2_body([2, 148, 72, 35, 120, 33.6, 0.627, 10**30])),
    (V2, v2_body([2, "148", 72, None, True, 33.6, 0.627, 50])),
    (V2, v2_body(ROW, [1, 7])),
    (V2, v2_body(ROW, id="\u00e9t\u00e9")),
    (V2, v2_body(ROW, outputs=[{"name": 10**30}])),
    ("/v2/models/diabetes/versions/nope/infer", v2_body(ROW)),
]


@pytest.mark.parametrize(("path", "body"), ANSWERED)
def test_the_route_answers_as_django_does(apps, path, body):
    same_answer(apps, path, body if isinstance(body, bytes) else json.dumps(body).encode())


@pytest.mark.parametrize(
    "raw",
    [b"not json", b'{"features": {"glucose": NaN}}', b'{"\\ud800": 1}', b"\xff\xfe", b'{"features": ' * 1200],
)
@pytest.mark.parametrize("path", [REST, V2])
def test_bodies_that_are_not_json(apps, path, raw):
    same_answer(apps, path, raw)


def test_the_served_version_path(apps, served_model):
    same_answer(apps, f"/v2/models/diabetes/versions/{served_model.version}/infer", v2_body(ROW))


@pytest.mark.parametrize(
    ("path", "body", "kwargs"),
    [
        (REST, json.dumps({"features": PERSON}).encode(), {"headers": ((b"content-type", b"text/plain"),)}),
        (REST, json.dumps({"features": PERSON}).encode(), {"headers": (*JSON, (b"accept", b"text/html"))}),
        (REST, json.dumps({"features": PERSON}).encode(), {"query": b"format=json"}),
        (
            REST,
            json.dumps({"features": PERSON}).encode(),
            {"headers": ((b"content-type", b"text/plain"), (b"content-type", b"application/json"))},
        ),
        (REST, json.dumps({"instances": [PERSON] * 200}).encode(), {}),  # over REST_INLINE_BODY_BYTES
        (REST, json.dumps({"features": PERSON}).encode(), {"host": b"evil.example"}),
        (V2, v2_body(ROW), {"host": b"evil.example"}),
        (V2, b"", {"method": "GET"}),
        (REST, b"", {"method": "GET"}),
    ],
)
def test_what_the_route_leaves_to_django(apps, path, body, kwargs):
    same_answer(apps, path, body, answered_by_route=False, **kwargs)


def test_security_headers_are_those_django_sets(apps):
    for path, body in ((REST, json.dumps({"features": PERSON}).encode()), (V2, v2_body(ROW))):
        headers = same_answer(apps, path, body)["headers"]
        assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert "no-store" in headers["cache-control"]
        assert int(headers["content-length"]) > 0


def test_rest_assessments_are_stored_before_the_answer(apps):
    _, route, _ = apps
    before = Assessment.objects.count()
    one = json.loads(call(route, REST, json.dumps({"features": PERSON}).encode())["body"])
    assert Assessment.objects.filter(public_id=one["id"], interface="rest").exists()
    batch = json.loads(call(route, REST, json.dumps({"instances": [PERSON, {"glucose": 99}]}).encode())["body"])
    ids = [p["id"] for p in batch["predictions"]]
    assert Assessment.objects.filter(public_id__in=ids).count() == 2
    assert Assessment.objects.count() == before + 3
    call(route, REST, json.dumps({"features": {"glucose": 900}}).encode())
    assert Assessment.objects.count() == before + 3  # a refused request stores nothing


def test_the_writer_keeps_its_cursor_between_writes(apps):
    """One cursor on the writer's connection serves write after write. (A cursor of a connection
    that was closed is never used: tests/security/test_database_down_answers_503.py takes the
    database file away and brings it back, and the writes after it are stored again.)"""
    _, route, _ = apps
    body = json.dumps({"features": PERSON}).encode()
    ids = [json.loads(call(route, REST, body)["body"])["id"]]
    first = api_asgi._cursor
    ids.append(json.loads(call(route, REST, body)["body"])["id"])
    assert first is not None and api_asgi._cursor is first
    assert Assessment.objects.filter(public_id__in=ids).count() == 2


def test_the_answer_waits_for_its_assessment(apps):
    """The answer is made ready while the writer stores its assessment, and sent only once the
    assessment is stored: with the writer held, nothing is sent."""
    _, route, _ = apps
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        held.set()
        release.wait(10)

    api_asgi._writer.submit(hold)
    assert held.wait(10)

    async def scenario() -> dict:
        task = asyncio.ensure_future(
            _call(route, REST, json.dumps({"features": PERSON}).encode(), JSON, "POST", b"", b"127.0.0.1:8000")
        )
        await asyncio.sleep(0.3)
        assert not task.done()  # the answer is not sent while its write waits
        release.set()
        return await task

    answer = async_to_sync(scenario)()
    assert answer["status"] == 200
    assert Assessment.objects.filter(public_id=json.loads(answer["body"])["id"]).exists()


def test_a_failed_write_answers_503_not_the_prepared_answer(apps, monkeypatch):
    """An answer whose assessment could not be stored is never sent: the client gets the API's 503
    and no id (README: "Errors")."""
    _, route, _ = apps

    def fail(**kwargs: Any) -> None:
        raise OperationalError("the database went away")

    monkeypatch.setattr(api_asgi, "assessments_insert", fail)
    before = Assessment.objects.count()
    answer = call(route, REST, json.dumps({"features": PERSON}).encode())
    assert answer["status"] == 503
    body = json.loads(answer["body"])
    assert "errors" in body and "id" not in body and "risk" not in body
    assert Assessment.objects.count() == before


def test_throttled_alike(apps, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"anon": "2/minute"}}
    settings.THROTTLE_V2_ROWS = "2/minute"
    django, route, _ = apps
    answers = {}
    for name, app in (("django", django), ("route", route)):
        throttling.reset()
        answers[name] = [
            comparable(call(app, path, body))
            for path, body in [
                (REST, json.dumps({"features": PERSON}).encode()),
                (REST, json.dumps({"instances": [PERSON, PERSON]}).encode()),  # 1 + 1 more row: over
                (REST, json.dumps({"features": PERSON}).encode()),
                (V2, v2_body(ROW + ROW)),
                (V2, v2_body(ROW)),
            ]
        ]
    assert answers["route"] == answers["django"]
    assert [a["status"] for a in answers["route"]] == [200, 429, 429, 200, 429]
    assert "retry-after" in answers["route"][2]["headers"]


def test_no_model_alike(apps):
    ModelVersion.objects.update(is_active=False)
    active_model.reset()
    for path, body in ((REST, json.dumps({"features": PERSON}).encode()), (V2, v2_body(ROW))):
        assert same_answer(apps, path, body)["status"] == 503


def test_every_middleware_in_settings_is_known_to_the_route():
    assert PredictionRoute._middleware() is not None


def test_keys_required_for_predictions_leave_the_route(apps, settings):
    settings.API_REQUIRE_KEY_FOR_PREDICT = True
    same_answer(apps, REST, json.dumps({"features": PERSON}).encode(), answered_by_route=False)
    same_answer(apps, V2, v2_body(ROW), answered_by_route=False)
