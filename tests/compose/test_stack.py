"""The compose stack for real: two web replicas behind nginx, reached through one port on 127.0.0.1.

Run with `make compose-test` (README: "Docker Compose"). The tests share one stack and run in file
order; the last one kills a replica.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time

import pytest
import requests
import websockets
from websockets.typing import Origin

from tests.compose.commands import log, run
from tests.samples import PERSON, PERSON_ROW
from tests.servers import csrf_token

pytestmark = [pytest.mark.compose, pytest.mark.slow]

PREDICTION_KEYS = {"id", "risk", "band", "label", "threshold", "contributions", "imputed", "warnings", "model"}
MAX_SOCKETS = 24  # sockets opened at most to find both replicas (each lands on a random one)


def upstream(response) -> str:
    value = response.headers.get("X-Upstream", "")
    assert value, f"the proxy did not name the replica: {dict(response.headers)}"
    return value


async def open_socket(stack, path: str):
    ws = await websockets.connect(
        stack.ws_base + path, origin=Origin(f"http://127.0.0.1:{stack.port}"), open_timeout=20, max_size=2**20
    )
    return ws, stack.replica(upstream(ws.response))


async def receive_type(ws, wanted: str, within: float = 20) -> dict:
    deadline = time.monotonic() + within
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no {wanted!r} message within {within} s"
        message = json.loads(await asyncio.wait_for(ws.recv(), remaining))
        if message.get("type") == wanted:
            return message


async def sockets_on_both_replicas(stack, path: str) -> dict[str, object]:
    """Open sockets until one is on each replica; close the rest. Returns replica -> socket."""
    found: dict[str, object] = {}
    spare = []
    for attempt in range(1, MAX_SOCKETS + 1):
        ws, replica = await open_socket(stack, path)
        log(f"socket {attempt} on {path} reached {replica} through 127.0.0.1:{stack.port}")
        if replica in found:
            spare.append(ws)
        else:
            found[replica] = ws
        if len(found) == 2:
            break
    for ws in spare:
        await ws.close()
    assert len(found) == 2, f"{MAX_SOCKETS} sockets all reached {list(found)}"
    return found


def test_only_the_proxy_is_published(stack):
    published = {}
    for name in ("web", "proxy", "db", "redis"):
        out = stack.compose("ps", "-q", name).stdout.split()
        for container in out:
            ports = stack.inspect(container)["NetworkSettings"]["Ports"] or {}
            published[name] = [b for bindings in ports.values() if bindings for b in bindings]
    assert published["web"] == [] and published["db"] == [] and published["redis"] == []
    assert [(b["HostIp"], b["HostPort"]) for b in published["proxy"]] == [("127.0.0.1", str(stack.port))]


def test_form_and_result_page(stack):
    session = requests.Session()
    form = session.get(stack.base + "/", timeout=20)
    assert form.status_code == 200 and "csrfmiddlewaretoken" in form.text
    token = csrf_token(form.text)
    result = session.post(
        stack.base + "/predict/",
        data={**{k: str(v) for k, v in PERSON.items()}, "csrfmiddlewaretoken": token},
        headers={"Referer": stack.base + "/", "Origin": stack.base},
        timeout=20,
    )
    assert result.status_code == 200, result.text[:500]
    assert "not a diagnosis" in result.text and "%" in result.text
    static = session.get(stack.base + "/static/js/live.js", timeout=20)
    assert static.status_code == 200


def test_rest_prediction(stack):
    response = requests.post(stack.base + "/api/v1/predict", json={"features": PERSON}, timeout=20)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= PREDICTION_KEYS and 0 <= body["risk"] <= 1


def test_v2_inference(stack):
    request = {
        "id": "compose",
        "inputs": [{"name": "features", "datatype": "FP64", "shape": [1, 8], "data": PERSON_ROW}],
    }
    response = requests.post(stack.base + "/v2/models/diabetes/infer", json=request, timeout=20)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["risk"]["shape"] == [1] and 0 <= outputs["risk"]["data"][0] <= 1
    rest = requests.post(stack.base + "/api/v1/predict", json={"features": PERSON}, timeout=20).json()
    assert outputs["risk"]["data"][0] == pytest.approx(rest["risk"], abs=1e-9)


def test_bodies_are_bounded_in_the_error_shape_of_their_path(stack):
    # Just over the application's limit: the proxy passes it on and the application refuses it.
    near = requests.post(
        stack.base + "/api/v1/predict",
        data=b" " * (1_048_576 + 1024),
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert near.status_code == 413 and set(near.json()["errors"]) == {"non_field_errors"}
    # Over the proxy's limit: refused from the Content-Length alone, before any body is read.
    for path, shape in (("/api/v1/predict", "errors"), ("/v2/models/diabetes/infer", "error"), ("/predict/", None)):
        with socket.create_connection(("127.0.0.1", stack.port), timeout=20) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{stack.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {50 * 2**20}\r\nConnection: close\r\n\r\n".encode()
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), head
        if shape:
            assert shape in json.loads(body)
        else:
            assert b"<title>413" in body


def test_live_socket_predicts(stack):
    async def scenario():
        ws, replica = await open_socket(stack, "/ws/predict/")
        try:
            await ws.send(json.dumps({"type": "update", "seq": 1, "features": PERSON}))
            message = await receive_type(ws, "prediction")
            assert message["seq"] == 1 and 0 <= message["risk"] <= 1
            log(f"live socket answered by {replica}: risk {message['risk']:.3f}")
        finally:
            await ws.close()

    asyncio.run(scenario())


def test_kiosk_on_one_replica_sees_a_typist_on_the_other(stack):
    board = "compose-" + secrets.token_hex(4)

    async def scenario():
        kiosks = await sockets_on_both_replicas(stack, f"/ws/kiosk/{board}/")
        typists = await sockets_on_both_replicas(stack, "/ws/predict/")
        try:
            for kiosk in kiosks.values():
                await receive_type(kiosk, "snapshot")
            for typist in typists.values():
                await typist.send(json.dumps({"type": "share", "board": board}))
                assert (await receive_type(typist, "shared"))["board"] == board
            for seq, (typist_replica, typist) in enumerate(typists.items(), start=1):
                (kiosk_replica,) = [r for r in kiosks if r != typist_replica]
                await typist.send(json.dumps({"type": "update", "seq": seq, "features": {**PERSON, "age": 30 + seq}}))
                prediction = await receive_type(typist, "prediction")
                # The stack's own BOARD_DELAY_S (10 s) passes before a shared tile appears.
                tile = await receive_type(kiosks[kiosk_replica], "session", within=40)
                while tile["risk"] != pytest.approx(prediction["risk"]):
                    tile = await receive_type(kiosks[kiosk_replica], "session", within=40)
                log(f"typist on {typist_replica} -> kiosk on {kiosk_replica}: risk {tile['risk']:.3f}")
        finally:
            for ws in [*kiosks.values(), *typists.values()]:
                await ws.close()

    asyncio.run(scenario())


def test_activate_reaches_both_replicas(stack):
    trained = stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "migrate",
        "python",
        "manage.py",
        "train",
        "--repeats",
        "1",
        "--no-activate",
        timeout=900,
    )
    assert trained.returncode == 0
    versions = stack.compose(
        "run",
        "--rm",
        "--no-deps",
        "migrate",
        "python",
        "manage.py",
        "shell",
        "-c",
        "from ml_engine.models import ModelVersion as M;"
        " print(*M.objects.order_by('created_at').values_list('version', flat=True))",
    ).stdout.split()
    new = versions[-1]
    stack.compose("run", "--rm", "--no-deps", "migrate", "python", "manage.py", "activate", new)
    seen: dict[str, str] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (len(seen) < 2 or set(seen.values()) != {new}):
        operator = {"Authorization": f"Bearer {stack.env['DJANGO_METRICS_TOKEN']}"}  # the version is a detail
        response = requests.get(stack.base + "/readyz", headers=operator, timeout=20)
        seen[stack.replica(upstream(response))] = response.json().get("model_version")
        time.sleep(0.2)
    log(f"after `manage.py activate {new}`: {seen}")
    assert len(seen) == 2 and set(seen.values()) == {new}


def test_forwarded_for_from_a_client_does_not_reset_the_throttle(stack):
    """Exhaust the (small) API throttle, then send made-up X-Forwarded-For addresses: still 429."""
    statuses = []
    consecutive = 0
    # Until 20 refusals in a row: whichever replica a request lands on, its budget is spent.
    for _ in range(200):
        status = requests.get(stack.base + "/api/v1/model", timeout=20).status_code
        statuses.append(status)
        consecutive = consecutive + 1 if status == 429 else 0
        if consecutive == 20:
            break
    assert consecutive == 20, statuses
    assert statuses.count(200) >= 1
    faked = [
        requests.get(stack.base + "/api/v1/model", headers={"X-Forwarded-For": f"10.9.{i}.{i + 1}"}, timeout=20)
        for i in range(20)
    ]
    assert [r.status_code for r in faked] == [429] * 20
    log(f"throttle {statuses.count(200)} x 200 then 429; 20 made-up X-Forwarded-For addresses: all 429")
    # What the replicas counted (the throttle's Redis keys, `throttle:<scope>:<address>`): this
    # client as the proxy saw it, never the proxy itself nor a made-up address.
    keys = stack.compose("exec", "-T", "redis", "redis-cli", "--scan", "--pattern", "throttle:rest:*").stdout.split()
    counted = {key.split(":", 2)[2] for key in keys}
    proxy = stack.compose("ps", "-q", "proxy").stdout.split()[0]
    (network,) = stack.inspect(proxy)["NetworkSettings"]["Networks"].values()
    log(f"REST throttle counted {sorted(counted)}; proxy {network['IPAddress']}, gateway {network['Gateway']}")
    assert counted and network["IPAddress"] not in counted
    assert not any(address.startswith("10.9.") for address in counted)
    assert counted <= {network["Gateway"], "127.0.0.1"}


def test_a_killed_replica_hands_its_sockets_to_the_other(stack):
    async def scenario():
        ws, replica = await open_socket(stack, "/ws/predict/")
        await ws.send(json.dumps({"type": "update", "seq": 1, "features": PERSON}))
        first = await receive_type(ws, "prediction")
        run("docker", "kill", replica)
        log(f"killed {replica} while its socket was open")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 30)
        # What the page does: reconnect and re-send its whole state.
        ws2, replica2 = await open_socket(stack, "/ws/predict/")
        try:
            await ws2.send(json.dumps({"type": "update", "seq": 1, "features": PERSON}))
            second = await receive_type(ws2, "prediction")
        finally:
            await ws2.close()
        log(f"reconnected through 127.0.0.1:{stack.port} to {replica2}: risk {second['risk']:.3f}")
        assert replica2 != replica
        assert second["risk"] == pytest.approx(first["risk"])

    asyncio.run(scenario())
