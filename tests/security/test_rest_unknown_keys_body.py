"""80,000 unknown keys in ``features`` or many in every row of ``instances``: a small 400 that
names a few keys and counts the rest, and nothing stored."""

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.websocket_raw import resident_kib

MAX_ERROR_BODY = 8 * 1024
LIMIT = 1_048_576


def post(url: str, body: dict) -> requests.Response:
    data = json.dumps(body, separators=(",", ":")).encode()
    assert len(data) < LIMIT  # within the body limit: this is about the keys, not the size
    return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=60)


def test_80000_unknown_feature_keys_get_a_small_400(daphne):
    body = {"features": {f"k{i}": 1 for i in range(80_000)}}
    response = post(f"{daphne.http}/api/v1/predict", body)
    assert response.status_code == 400
    assert len(response.content) < MAX_ERROR_BODY
    errors = response.json()["errors"]
    named = [key for key in errors if key.startswith("features.")]
    assert named == ["features.k0", "features.k1", "features.k2"]
    assert errors["features"] == ["And 79997 more unknown features."]


def test_every_row_full_of_unknown_keys_gets_a_small_400(daphne):
    body = {"instances": [{f"x{i}": 1 for i in range(100)} for _ in range(1000)]}
    response = post(f"{daphne.http}/api/v1/predict", body)
    assert response.status_code == 400
    assert len(response.content) < MAX_ERROR_BODY
    errors = response.json()["errors"]
    assert errors["instances"] == ["And 990 more instances with errors."]
    assert errors["instances[0]"] == ["And 97 more unknown features."]
    assert "instances[10]" not in errors


def test_unknown_top_level_keys_are_bounded_too(daphne):
    body = {"features": {"glucose": 100}, **{f"extra{i}": 1 for i in range(50_000)}}
    response = post(f"{daphne.http}/api/v1/predict", body)
    assert response.status_code == 400
    assert len(response.content) < MAX_ERROR_BODY
    assert response.json()["errors"]["non_field_errors"] == ["And 49997 more unknown fields."]


def test_ten_such_bodies_at_once_stay_within_a_memory_bound(fresh_daphne):
    # Parsed whole, ten such bodies at once took hundreds of MiB (issue: 200,000 keys, ~385 MiB).
    # Its own process (fresh_daphne): the growth is measured from a fresh start, not from a heap
    # the other tests' bodies have already grown.
    daphne = fresh_daphne
    data = json.dumps({"features": {f"k{i}": 1 for i in range(80_000)}}, separators=(",", ":")).encode()
    assert len(data) < LIMIT
    before = resident_kib(daphne.proc.pid)
    peak = before
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, resident_kib(daphne.proc.pid))
            time.sleep(0.01)

    def attack(_: int) -> int:
        url = f"{daphne.http}/api/v1/predict"
        return requests.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=120).status_code

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=10) as pool:
            statuses = list(pool.map(attack, range(10)))
    finally:
        done.set()
        watcher.join()
    assert statuses == [400] * 10
    assert peak - before < 100 * 1024, f"resident memory grew by {(peak - before) // 1024} MiB"
    calm = post(f"{daphne.http}/api/v1/predict", {"features": {"glucose": 120}})
    assert calm.status_code == 200
