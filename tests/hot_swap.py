"""Plain helpers for the hot-swap tests across processes (tests/ml_engine/test_hot_swap*.py): the
stored versions of a server database, and what a daphne serves, over a live socket, REST or its
/metrics."""

from __future__ import annotations

import json
import time
import urllib.request

from websockets.sync.client import ClientConnection

from tests.samples import TIMEOUT
from tests.servers import DaphneServer, ServerEnv, ask

SWITCH_DEADLINE = 2.0  # README "Model registry": every running process serves the new version within 2 s


def stored_versions(env: ServerEnv) -> list[str]:
    """The versions of a ``three_versions_env`` database (tests/ml_engine/conftest.py), oldest
    (the active one) first, as they were stored."""
    return json.loads((env.base / "versions.json").read_text())


def version_served(ws: ClientConnection, seq: int) -> str:
    reply = ask(ws, {"type": "update", "seq": seq, "features": {"glucose": 100 + seq % 50}})
    assert reply["type"] == "prediction", reply
    return reply["model"]["version"]


def wait_for_version(sockets: list[ClientConnection], version: str, start_seq: int) -> float:
    """Seconds until every socket's next prediction reports ``version``."""
    started = time.monotonic()
    pending = list(sockets)
    seq = start_seq
    while pending:
        seq += 1
        pending = [ws for ws in pending if version_served(ws, seq) != version]
        if pending:
            assert time.monotonic() - started < TIMEOUT, "the new version never arrived"
            time.sleep(0.05)
    return time.monotonic() - started


def rest_answer(server: DaphneServer, features: dict | None = None) -> dict:
    body = json.dumps({"features": features or {"glucose": 120}}).encode()
    request = urllib.request.Request(f"{server.http}/api/v1/predict", body, {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=TIMEOUT))
