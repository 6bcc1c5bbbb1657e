"""What a shadow version costs (README: "Model registry"): the same requests with and without one,
in the same run.

Two views: the prediction service in this process (V2 1 row, REST 1 row, one live keystroke's
prediction), where the shadow's own cost is a few µs; and end to end against one daphne process
(V2 1 row and REST 1 row over one keep-alive connection, keystrokes over one socket), where
rounds with and without the shadow alternate so that both see the same machine.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import time
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from .live import PERSON, TYPING_RATE, keystroke_and_ping, server_env
from .stats import Summary

ROUNDS = 4  # alternating without / with the shadow
END_TO_END = 150  # samples of each kind per round
IN_PROCESS = 3000  # calls of each kind per round


def _second_version() -> str:
    """A version to shadow with: trained quickly, stored inactive."""
    import os

    from django.core.management import call_command

    from ml_engine.models import ModelVersion

    with open(os.devnull, "w") as quiet:
        call_command("train", "--quick", "--no-activate", stdout=quiet)
    return ModelVersion.objects.filter(is_active=False).order_by("-created_at").values_list("version", flat=True)[0]


def _in_process(timings: dict[str, list[float]], label: str) -> None:
    from ml_engine.models import Interface
    from ml_engine.schema import FEATURE_KEYS
    from ml_engine.services import _predict_cleaned, predict, predict_risks

    features = {key: PERSON.get(key) for key in FEATURE_KEYS}
    row = np.array([[float(PERSON.get(key, 1.0)) for key in FEATURE_KEYS]])
    for i in range(IN_PROCESS):
        t = time.perf_counter_ns()
        predict_risks(matrix=row, interface=Interface.V2)
        timings[f"service: V2 1 row, {label}"].append((time.perf_counter_ns() - t) / 1000)
        t = time.perf_counter_ns()
        predict(features={**PERSON, "glucose": 90 + i % 100}, interface=Interface.REST)
        timings[f"service: REST 1 row, {label}"].append((time.perf_counter_ns() - t) / 1000)
        t = time.perf_counter_ns()
        _predict_cleaned(features, interface=Interface.WS, started=0.0)
        timings[f"service: keystroke, {label}"].append((time.perf_counter_ns() - t) / 1000)


def _http(base: str, timings: dict[str, list[float]], label: str) -> None:
    from ml_engine.schema import FEATURE_KEYS

    host, port = urllib.parse.urlsplit(base).netloc.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    for i in range(END_TO_END):
        row = [float({**PERSON, "glucose": 90 + i % 100}.get(key, 1.0)) for key in FEATURE_KEYS]
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "features",
                        "datatype": "FP64",
                        "shape": [1, 8],
                        "data": row,
                    }
                ]
            }
        )
        timings[f"daphne: V2 1 row, {label}"].append(_timed_post(conn, "/v2/models/diabetes/infer", body))
        body = json.dumps({"features": {**PERSON, "glucose": 90 + i % 100}})
        timings[f"daphne: REST 1 row, {label}"].append(_timed_post(conn, "/api/v1/predict", body))
    conn.close()


def _timed_post(conn: http.client.HTTPConnection, path: str, body: str) -> float:
    """One JSON POST on a kept-alive connection: its round trip in µs (it must answer 200)."""
    t = time.perf_counter_ns()
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    elapsed = (time.perf_counter_ns() - t) / 1000
    assert response.status == 200, response.status
    return elapsed


def _wait_for_plan(base: str, shadow: str | None) -> None:
    """Until the daphne process's /metrics shows ``shadow`` loaded (or none)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = urllib.request.urlopen(f"{base}/metrics", timeout=30).read().decode()
        loaded = [line for line in text.splitlines() if line.startswith('diabetes_serving_plan_info{role="shadow"')]
        if (shadow is None and not any(line.endswith(" 1.0") for line in loaded)) or any(
            f'version="{shadow}"' in line and line.endswith(" 1.0") for line in loaded
        ):
            return
        time.sleep(0.1)
    raise SystemExit("the daphne process never followed the shadow change")


def run(*, work: Path) -> dict:
    from ml_engine.registry import active_model
    from ml_engine.services import model_shadow
    from tests.servers import daphne_servers

    shadow = _second_version()
    timings: dict[str, list[float]] = {}
    for where in ("service", "daphne"):
        for kind in ("V2 1 row", "REST 1 row", "keystroke"):
            for label in ("no shadow", "with a shadow"):
                timings[f"{where}: {kind}, {label}"] = []
    env = server_env(work)
    with daphne_servers(env, 1) as [server]:
        url = server.ws + "/ws/predict/"
        _http(server.http, {key: [] for key in timings}, "no shadow")  # warm-up, not kept
        for round_ in range(ROUNDS * 2):
            on = round_ % 2 == 1
            label = "with a shadow" if on else "no shadow"
            model_shadow(version=shadow if on else None, changed_by="bench")
            active_model.refresh()
            assert (active_model.plan.shadow is not None) == on
            _wait_for_plan(server.http, shadow if on else None)
            _in_process(timings, label)
            _http(server.http, timings, label)
            keystrokes, _ = asyncio.run(keystroke_and_ping(url, n=END_TO_END, rate=TYPING_RATE))
            timings[f"daphne: keystroke, {label}"] += keystrokes
        model_shadow(version=None, changed_by="bench")
    summaries = {name: Summary.of(name, values) for name, values in timings.items()}
    measured = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    return {"shadow_version": shadow, "summaries": summaries, "rounds": ROUNDS, "measured": measured}
