"""Access control on a real daphne with production-like settings (README: "Access and roles"):
an anonymous outcome is refused and a keyed one accepted once; guessed ids find nothing;
/metrics and the /readyz details need the operator's token; CSP and no-store are on the wire;
the admin login locks an address out under the ASGI server."""

import json
import re
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest

from tests.samples import PERSON
from tests.servers import csrf_token, daphne_servers, production_settings

pytestmark = pytest.mark.slow

TOKEN = "operator-token-for-the-test"


def call(url, body=None, *, method=None, headers=None):
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method or ("POST" if data else "GET"))
    if body is not None and not isinstance(body, bytes):
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.fixture(scope="module")
def server(module_server_env, collected_static):
    """One production-like daphne for the module: the outcome test never touches the admin login
    whose lock-out the other test counts, and the lock-out is per address, in the database."""
    server_env = module_server_env
    server_env.extra.update(production_settings(collected_static), DJANGO_METRICS_TOKEN=TOKEN, API_THROTTLE_ANON="")
    key = server_env.manage("apikey", "create", "--name", "clinic", "--scope", "outcomes").stdout.splitlines()[1]
    with daphne_servers(server_env) as [daphne]:
        yield daphne, key


def test_outcomes_ids_and_operations_data_over_daphne(server):
    daphne, key = server
    status, headers, body = call(f"{daphne.http}/api/v1/predict", {"features": PERSON})
    assert status == 200, body
    assert "no-store" in headers["Cache-Control"]
    ident = json.loads(body)["id"]
    assert uuid.UUID(ident).version == 4
    outcome = f"{daphne.http}/api/v1/assessments/{ident}/outcome"

    status, headers, body = call(outcome, {"outcome": 1})
    assert status == 401 and headers["WWW-Authenticate"] == "Api-Key", body
    assert set(json.loads(body)) == {"errors"}
    keyed = {"Authorization": f"Api-Key {key}"}
    status, _, body = call(outcome, {"outcome": 1}, headers=keyed)
    assert status == 200 and json.loads(body)["outcome"] == 1, body
    status, _, body = call(outcome, {"outcome": 0}, headers=keyed)
    assert status == 409 and "already recorded" in json.loads(body)["errors"]["non_field_errors"][0]

    for guess in ("1", "2", str(uuid.uuid4())):
        status, _, body = call(f"{daphne.http}/api/v1/assessments/{guess}/outcome", {"outcome": 1}, headers=keyed)
        assert status == 404, (guess, body)

    status, _, body = call(f"{daphne.http}/metrics")
    assert status == 401 and b"diabetes_" not in body
    status, _, body = call(f"{daphne.http}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and b"diabetes_predictions_total" in body

    status, headers, body = call(f"{daphne.http}/readyz")
    assert json.loads(body) == {"status": json.loads(body)["status"]}
    status, _, body = call(f"{daphne.http}/readyz", headers={"Authorization": f"Bearer {TOKEN}"})
    details = json.loads(body)
    assert set(details["checks"]) == {"model", "database", "channel_layer"}
    assert not re.search(r"127\.0\.0\.1|localhost|:\d{4,5}\b", body.decode())

    status, headers, body = call(f"{daphne.http}/")
    assert status == 200, body[:500]
    assert "script-src 'self'" in headers["Content-Security-Policy"] and "no-store" in headers["Cache-Control"]


def test_admin_login_locks_out_over_asgi(server):
    daphne, _ = server
    login = f"{daphne.http}/admin/login/"
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    statuses = []
    for _ in range(6):
        page = opener.open(login, timeout=30).read().decode()
        token = csrf_token(page)
        form = urllib.parse.urlencode({"csrfmiddlewaretoken": token, "username": "root", "password": "wrong"})
        request = urllib.request.Request(login, data=form.encode(), headers={"Referer": login})
        try:
            statuses.append(opener.open(request, timeout=30).status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
    assert statuses[:4] == [200] * 4 and statuses[4:] == [429, 429]
