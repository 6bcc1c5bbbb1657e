"""One client spreading requests over two daphne processes that share Redis: REST counts rows (a
batch of N costs N), V2 counts rows, the HTML form counts posts, WebSocket handshakes are counted
per address; over the limit each interface answers in its own shape and stores nothing."""

import pytest
import redis
import requests
from websockets.exceptions import InvalidStatus

from tests.samples import PERSON, PERSON_ROW, TIMEOUT
from tests.servers import csrf_token, daphne_servers


def _v2_body(rows: int) -> dict:
    data = [PERSON_ROW] * rows
    return {"inputs": [{"name": "features", "datatype": "FP64", "shape": [rows, 8], "data": data}]}


@pytest.fixture(scope="module")
def shared_servers(module_redis_env):
    module_redis_env.extra.update(
        API_THROTTLE_ANON="100/minute",
        V2_THROTTLE_ANON="1500/minute",
        FORM_THROTTLE="2/minute",
        WEBSOCKET_THROTTLE_CONNECT="3/minute",
    )
    with daphne_servers(module_redis_env, 2) as servers:
        yield servers


@pytest.fixture
def two_servers(shared_servers, module_redis_server):
    """The module's two processes, with no count left from another test: the counts live in
    Redis only, and it is emptied first."""
    with redis.Redis.from_url(module_redis_server.url) as client:
        client.flushall()
    return shared_servers


def test_rest_counts_rows_across_processes(two_servers):
    a, b = two_servers
    batch = {"instances": [PERSON] * 60}
    assert requests.post(f"{a.http}/api/v1/predict", json=batch, timeout=TIMEOUT).status_code == 200
    refused = requests.post(f"{b.http}/api/v1/predict", json=batch, timeout=TIMEOUT)
    assert refused.status_code == 429
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.json()["errors"]["non_field_errors"][0].startswith("Too many requests.")
    # 61 of 100 rows are used: 39 single requests still fit, shared by both processes.
    answers = [
        requests.post(f"{server.http}/api/v1/predict", json={"features": PERSON}, timeout=TIMEOUT).status_code
        for server in (a, b) * 20
    ]
    assert answers.count(200) == 39
    assert answers[-1] == 429


def test_v2_counts_rows_across_processes(two_servers):
    a, b = two_servers
    infer = "/v2/models/diabetes/infer"
    assert requests.post(a.http + infer, json=_v2_body(1000), timeout=TIMEOUT).status_code == 200
    refused = requests.post(b.http + infer, json=_v2_body(1000), timeout=TIMEOUT)
    assert refused.status_code == 429
    assert refused.json()["error"].startswith("Too many rows")
    assert int(refused.headers["Retry-After"]) > 0
    assert requests.post(b.http + infer, json=_v2_body(500), timeout=TIMEOUT).status_code == 200


def test_form_posts_are_throttled_across_processes(two_servers):
    answers = []
    for server in (*two_servers, two_servers[0]):
        session = requests.Session()
        page = session.get(f"{server.http}/", timeout=TIMEOUT).text
        token = csrf_token(page)
        values = {key: value for key, value in PERSON.items() if value is not None}
        response = session.post(
            f"{server.http}/predict/",
            data={**values, "csrfmiddlewaretoken": token},
            headers={"Referer": server.http + "/"},
            timeout=TIMEOUT,
        )
        answers.append(response)
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[2].headers["Content-Type"].startswith("text/html")
    assert "Too many requests" in answers[2].text
    assert int(answers[2].headers["Retry-After"]) > 0


def test_websocket_connects_are_throttled_per_address(two_servers):
    a, b = two_servers
    for server in (a, b, a):
        with server.connect():
            pass
    with pytest.raises(InvalidStatus) as refused:
        b.connect()
    assert refused.value.response.status_code == 403
