"""The live WebSocket consumer (/ws/predict/) in process, through WebsocketCommunicator."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import threading
import time

import pytest
from channels.testing import WebsocketCommunicator
from prometheus_client import REGISTRY

from live import consumers
from live.layer import group_send_quietly
from live.wording import whole_percent
from ml_engine.models import Interface
from ml_engine.registry import ModelUnavailable, active_model
from ml_engine.schema import FEATURE_KEYS, FEATURES, FeatureValidationError
from ml_engine.services import predict
from tests.samples import PERSON, TIMEOUT


def merged(**values) -> dict:
    return {key: values.get(key) for key in FEATURE_KEYS}


@pytest.fixture
def slow_path(served_model, monkeypatch):
    """The scikit-learn path (no folded model): predictions run in the inference threads."""
    monkeypatch.setattr(served_model.model, "fast", None)
    return served_model


async def test_full_update_is_answered_with_the_same_risk_as_rest(served_model, open_socket):
    ws = await open_socket()
    reply = await ws.exchange({"type": "update", "seq": 0, "features": PERSON})
    expected = predict(features=PERSON, interface=Interface.WS)
    assert reply["type"] == "prediction"
    assert reply["seq"] == 0
    assert reply["risk"] == pytest.approx(expected.risk, abs=1e-9)
    assert reply["band"] == expected.band and reply["label"] == expected.label
    assert reply["threshold"] == pytest.approx(expected.threshold)
    assert reply["contributions"] == pytest.approx(expected.contributions, abs=1e-9)
    assert reply["imputed"] == [] and reply["warnings"] == expected.warnings
    assert reply["features"] == expected.features
    assert reply["model"] == {"name": served_model.name, "version": served_model.version}
    await ws.disconnect()


async def test_partial_updates_merge_into_the_session_state(served_model, open_socket):
    ws = await open_socket()
    first = await ws.exchange({"type": "update", "seq": 1, "features": {"glucose": 148}})
    assert first["features"] == merged(glucose=148.0)
    assert set(first["imputed"]) == set(FEATURE_KEYS) - {"glucose"}
    second = await ws.exchange({"type": "update", "seq": 2, "features": {"age": 50, "bmi": 33.6}})
    assert second["features"] == merged(glucose=148.0, age=50, bmi=33.6)
    assert second["risk"] == pytest.approx(
        predict(features={"glucose": 148, "age": 50, "bmi": 33.6}, interface=Interface.WS).risk, abs=1e-9
    )
    await ws.disconnect()


async def test_null_clears_a_key_and_clearing_the_last_key_says_cleared(served_model, open_socket):
    ws = await open_socket()
    await ws.exchange({"type": "update", "seq": 1, "features": {"glucose": 148, "age": 50}})
    reply = await ws.exchange({"type": "update", "seq": 2, "features": {"glucose": None}})
    assert reply["type"] == "prediction"
    assert reply["features"] == merged(age=50)
    assert "glucose" in reply["imputed"]
    assert reply["risk"] == pytest.approx(predict(features={"age": 50}, interface=Interface.WS).risk, abs=1e-9)
    assert await ws.exchange({"type": "update", "seq": 3, "features": {"age": None}}) == {
        "type": "cleared",
        "seq": 3,
    }
    await ws.disconnect()


async def test_reset_clears_the_state(served_model, open_socket):
    ws = await open_socket()
    await ws.exchange({"type": "update", "seq": 1, "features": PERSON})
    assert await ws.exchange({"type": "reset", "seq": 2}) == {"type": "cleared", "seq": 2}
    reply = await ws.exchange({"type": "update", "seq": 3, "features": {"bmi": 40}})
    assert reply["features"] == merged(bmi=40.0)
    await ws.disconnect()


async def test_invalid_values_refuse_the_whole_update_and_keep_the_state(served_model, open_socket):
    ws = await open_socket()
    await ws.exchange({"type": "update", "seq": 1, "features": {"glucose": 148}})
    reply = await ws.exchange(
        {"type": "update", "seq": 2, "features": {"age": 50, "bmi": 1000, "insulin": "12", "shoe_size": 9}}
    )
    assert reply["type"] == "error" and reply["seq"] == 2
    assert set(reply["errors"]) == {"bmi", "insulin", "shoe_size"}
    assert all(isinstance(m, str) for messages in reply["errors"].values() for m in messages)
    after = await ws.exchange({"type": "update", "seq": 3, "features": {"pregnancies": 1}})
    assert after["type"] == "prediction"
    assert after["features"] == merged(glucose=148.0, pregnancies=1)  # age from the refused update is not kept
    await ws.disconnect()


@pytest.mark.parametrize(
    "literal",
    ["true", '"148"', "[148]", '{"v": 148}', "1e400", "-1", "601"],
    ids=["bool", "string", "list", "object", "overflow", "below", "above"],
)
async def test_each_bad_value_is_refused_for_its_field(served_model, literal, open_socket):
    ws = await open_socket()
    reply = await ws.exchange_text('{"type": "update", "seq": 0, "features": {"glucose": ' + literal + "}}")
    assert reply["type"] == "error" and reply["seq"] == 0 and list(reply["errors"]) == ["glucose"]
    await ws.disconnect()


async def test_whole_number_features_refuse_fractions(served_model, open_socket):
    ws = await open_socket()
    reply = await ws.exchange({"type": "update", "seq": 0, "features": {"age": 50.5, "pregnancies": 2.0}})
    assert reply["type"] == "error" and list(reply["errors"]) == ["age"]
    await ws.disconnect()


BAD_FRAMES = {
    "not json": ("{type: update}", "bad_json"),
    "truncated": ('{"type": "update", "seq": 1, "features": {', "bad_json"),
    "NaN": ('{"type": "update", "seq": 1, "features": {"glucose": NaN}}', "bad_json"),
    "Infinity": ('{"type": "update", "seq": 1, "features": {"glucose": Infinity}}', "bad_json"),
    "-Infinity": ('{"type": "update", "seq": 1, "features": {"glucose": -Infinity}}', "bad_json"),
    "deep nesting": ("[" * 60000, "bad_json"),
    "huge integer": ('{"type": "update", "seq": ' + "9" * 5000 + "}", "bad_json"),
    "a list": ("[1, 2]", "bad_message"),
    "a string": ('"update"', "bad_message"),
    "null": ("null", "bad_message"),
    "no type": ('{"seq": 1, "features": {}}', "bad_message"),
    "unknown type": ('{"type": "predict", "seq": 1, "features": {}}', "bad_message"),
    "type not a string": ('{"type": ["update"], "seq": 1}', "bad_message"),
    "no seq": ('{"type": "update", "features": {"age": 50}}', "bad_message"),
    "negative seq": ('{"type": "update", "seq": -1, "features": {"age": 50}}', "bad_message"),
    "boolean seq": ('{"type": "update", "seq": true, "features": {"age": 50}}', "bad_message"),
    "float seq": ('{"type": "update", "seq": 1.0, "features": {"age": 50}}', "bad_message"),
    "string seq": ('{"type": "update", "seq": "1", "features": {"age": 50}}', "bad_message"),
    "seq beyond 2**53": ('{"type": "reset", "seq": 9007199254740992}', "bad_message"),
    "no features": ('{"type": "update", "seq": 1}', "bad_message"),
    "features a list": ('{"type": "update", "seq": 1, "features": [148]}', "bad_message"),
    "features null": ('{"type": "update", "seq": 1, "features": null}', "bad_message"),
}


@pytest.mark.parametrize("frame, code", BAD_FRAMES.values(), ids=BAD_FRAMES.keys())
async def test_bad_frames_get_an_error_and_the_socket_stays_open(served_model, frame, code, open_socket):
    ws = await open_socket()
    reply = await ws.exchange_text(frame)
    assert reply["type"] == "error" and reply["seq"] is None and reply["code"] == code
    assert isinstance(reply["detail"], str) and reply["detail"]
    after = await ws.exchange({"type": "update", "seq": 5, "features": {"age": 50}})
    assert after["type"] == "prediction" and after["seq"] == 5
    await ws.disconnect()


async def test_binary_frames_are_refused_and_the_socket_stays_open(served_model, open_socket):
    ws = await open_socket()
    await ws.send_to(bytes_data=json.dumps({"type": "reset", "seq": 1}).encode())
    reply = await ws.receive_json_from(timeout=TIMEOUT)
    assert reply["type"] == "error" and reply["code"] == "bad_message" and reply["seq"] is None
    assert (await ws.exchange({"type": "reset", "seq": 1}))["type"] == "cleared"
    await ws.disconnect()


async def test_a_seq_that_does_not_grow_is_refused(served_model, open_socket):
    ws = await open_socket()
    await ws.exchange({"type": "update", "seq": 7, "features": {"age": 50}})
    for seq in (7, 3):
        reply = await ws.exchange({"type": "update", "seq": seq, "features": {"age": 60}})
        assert reply["type"] == "error" and reply["code"] == "bad_message" and reply["seq"] is None
    after = await ws.exchange({"type": "update", "seq": 8, "features": {"bmi": 30}})
    assert after["features"] == merged(age=50, bmi=30.0)
    await ws.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        "x" * (64 * 1024 + 1),
        "é" * (32 * 1024 + 1),  # fewer than 64 Ki characters, more than 64 KiB of UTF-8
        json.dumps({"type": "update", "seq": 1, "features": {"age": 50}, "pad": "x" * 70000}),
    ],
    ids=["ascii", "multibyte", "valid json"],
)
async def test_a_frame_over_64_kib_closes_with_1009(served_model, frame, open_socket):
    ws = await open_socket()
    await ws.send_to(text_data=frame)
    closed = await ws.receive_output(timeout=TIMEOUT)
    assert closed == {"type": "websocket.close", "code": 1009}
    await ws.disconnect(code=1009)


async def test_a_big_frame_still_closes_where_the_server_refuses_1009_from_applications(
    served_model, open_socket, autobahn_close_codes
):
    """Autobahn (daphne) lets applications close only with 1000 or 3000-4999."""
    ws = await open_socket(application=autobahn_close_codes)
    await ws.send_to(text_data="x" * (64 * 1024 + 1))
    closed = await ws.receive_output(timeout=TIMEOUT)
    assert closed["type"] == "websocket.close" and closed["code"] == 4009
    await ws.disconnect(code=4009)


async def test_a_binary_frame_over_64_kib_closes_with_1009(served_model, open_socket):
    ws = await open_socket()
    await ws.send_to(bytes_data=b"\0" * (64 * 1024 + 1))
    assert await ws.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 1009}


async def test_a_frame_of_exactly_64_kib_is_read(served_model, open_socket):
    ws = await open_socket()
    frame = json.dumps({"type": "update", "seq": 1, "features": {"age": 50}, "pad": ""})
    frame = frame[:-2] + "x" * (64 * 1024 - len(frame)) + '"}'
    assert len(frame.encode()) == 64 * 1024
    assert (await ws.exchange_text(frame))["type"] == "prediction"
    await ws.disconnect()


async def burst(ws: WebsocketCommunicator, count: int) -> tuple[list[dict], dict]:
    """Send ``count`` updates without waiting, then read replies until the last seq is answered."""
    state: dict = {}
    for seq in range(count):
        feature = FEATURES[seq % len(FEATURES)]
        value = None if seq % 11 == 5 else feature.min + (feature.max - feature.min) * (seq % 10) / 10
        if value is not None and feature.integer:
            value = round(value)
        state[feature.key] = value
        await ws.send_json_to({"type": "update", "seq": seq, "features": {feature.key: value}})
    replies: list[dict] = []
    while not replies or replies[-1]["seq"] != count - 1:
        replies.append(await ws.receive_json_from(timeout=TIMEOUT))
    assert await ws.receive_nothing(timeout=0.2)
    return replies, state


@pytest.mark.parametrize("path", ["fast", "slow"])
async def test_a_burst_is_coalesced_and_the_last_update_is_answered(served_model, monkeypatch, path, open_socket):
    if path == "slow":
        monkeypatch.setattr(served_model.model, "fast", None)
    ws = await open_socket()
    replies, state = await burst(ws, 500)
    # 500 frames at once exceed the flood limit's burst: one rate_limited warning, nothing lost.
    warnings = [r for r in replies if r.get("code") == "rate_limited"]
    replies = [r for r in replies if r.get("code") != "rate_limited"]
    assert len(warnings) <= 1
    seqs = [r["seq"] for r in replies]
    assert all(r["type"] == "prediction" for r in replies)
    assert seqs == sorted(set(seqs)), "replies only move forward"
    assert seqs[-1] == 499
    expected = predict(features=state, interface=Interface.WS)
    assert replies[-1]["features"] == expected.features
    assert replies[-1]["risk"] == pytest.approx(expected.risk, abs=1e-9)
    await ws.disconnect()


async def test_slow_inference_runs_on_the_inference_threads(slow_path, monkeypatch, open_socket):
    threads = []
    model_predict = slow_path.model.predict_one

    def recording_predict(values):
        threads.append(threading.current_thread().name)
        return model_predict(values)

    expected = predict(features=PERSON, interface=Interface.WS)
    monkeypatch.setattr(slow_path.model, "predict_one", recording_predict)
    ws = await open_socket()
    reply = await ws.exchange({"type": "update", "seq": 1, "features": PERSON})
    assert reply["risk"] == pytest.approx(expected.risk, abs=1e-9)
    assert threads and all(name.startswith("live-predict") for name in threads)
    await ws.disconnect()


async def test_folded_inference_runs_inline_on_the_event_loop(served_model, monkeypatch, open_socket):
    assert served_model.model.fast is not None
    threads = []
    model_predict = served_model.model.predict_one

    def recording_predict(values):
        threads.append(threading.current_thread().name)
        return model_predict(values)

    monkeypatch.setattr(served_model.model, "predict_one", recording_predict)
    ws = await open_socket()
    assert (await ws.exchange({"type": "update", "seq": 1, "features": PERSON}))["type"] == "prediction"
    assert threads == [threading.current_thread().name]
    await ws.disconnect()


async def test_an_unloaded_model_is_loaded_off_the_event_loop(served_model, monkeypatch, open_socket):
    threads = []

    def recording_get():
        threads.append(threading.current_thread().name)
        active_model.install(served_model)  # what the first active_model.get() does, minus the database
        return served_model

    active_model.reset()
    monkeypatch.setattr(active_model, "get", recording_get)
    ws = await open_socket()
    assert (await ws.exchange({"type": "update", "seq": 1, "features": PERSON}))["type"] == "prediction"
    assert threads and threads[0].startswith("live-predict")
    await ws.disconnect()


async def test_model_unavailable_is_an_error_and_the_socket_stays_open(served_model, monkeypatch, open_socket):
    def unavailable():
        raise ModelUnavailable("No model is active. Run `python manage.py train`.")

    active_model.reset()
    monkeypatch.setattr(active_model, "get", unavailable)
    ws = await open_socket()
    reply = await ws.exchange({"type": "update", "seq": 1, "features": PERSON})
    assert reply == {
        "type": "error",
        "seq": 1,
        "code": "model_unavailable",
        "detail": "No model is active. Run `python manage.py train`.",
    }
    monkeypatch.undo()
    active_model.install(served_model)
    assert (await ws.exchange({"type": "update", "seq": 2, "features": {"age": 40}}))["type"] == "prediction"
    await ws.disconnect()


async def test_an_unexpected_failure_is_an_error_and_is_logged_without_features(
    served_model, monkeypatch, caplog, open_socket
):
    def broken(values):
        raise RuntimeError("boom")

    monkeypatch.setattr(served_model.model, "predict_one", broken)
    ws = await open_socket()
    with caplog.at_level(logging.ERROR, logger="live.consumers"):
        reply = await ws.exchange({"type": "update", "seq": 1, "features": {"glucose": 173.25}})
    assert reply["type"] == "error" and reply["code"] == "internal_error" and reply["seq"] == 1
    assert "boom" in caplog.text and "173.25" not in caplog.text
    await ws.disconnect()


async def test_nothing_reaches_the_board_until_the_person_shares(served_model, fresh_boards, open_socket):
    # docs/kiosk.md, "Sharing": a board name in the socket URL shares nothing by itself.
    kiosk = await open_socket("/ws/kiosk/lobby-1/")
    assert (await kiosk.receive_json_from(timeout=TIMEOUT))["sessions"] == []
    ws = await open_socket("/ws/predict/?board=lobby-1")
    reply = await ws.exchange({"type": "update", "seq": 1, "features": PERSON})
    assert reply["type"] == "prediction"
    assert await kiosk.receive_nothing(timeout=0.5)

    # Turned on: the newest prediction goes up, with the percent shown beside its band.
    assert await ws.exchange({"type": "share", "board": "lobby-1"}) == {
        "type": "shared",
        "board": "lobby-1",
        "after_s": 0,
    }
    event = await kiosk.receive_json_from(timeout=TIMEOUT)
    assert event["type"] == "session" and event["risk"] == reply["risk"] and event["band"] == reply["band"]
    assert event["percent"] == whole_percent(reply["risk"], reply["band"], served_model.bands)
    assert set(event) == {"type", "id", "risk", "band", "percent", "updated_at"}
    assert (await ws.exchange({"type": "reset", "seq": 2}))["type"] == "cleared"
    assert await kiosk.receive_json_from(timeout=TIMEOUT) == {"type": "session_end", "id": event["id"]}
    await ws.exchange({"type": "update", "seq": 3, "features": PERSON})
    again = await kiosk.receive_json_from(timeout=TIMEOUT)
    assert again["type"] == "session" and again["id"] == event["id"]

    # Turned off: the tile goes within 2 s, and nothing more reaches the board.
    started = time.monotonic()
    assert await ws.exchange({"type": "share", "board": None}) == {"type": "shared", "board": None}
    assert await kiosk.receive_json_from(timeout=TIMEOUT) == {"type": "session_end", "id": event["id"]}
    assert time.monotonic() - started < 2
    await ws.exchange({"type": "update", "seq": 4, "features": {"age": 61}})
    assert await kiosk.receive_nothing(timeout=0.5)
    await ws.disconnect()
    await kiosk.disconnect()


async def test_a_shared_tile_appears_only_after_the_delay(served_model, fresh_boards, settings, open_socket):
    settings.BOARD_DELAY_S = 1.0
    kiosk = await open_socket("/ws/kiosk/lobby/")
    await kiosk.receive_json_from(timeout=TIMEOUT)
    ws = await open_socket()
    started = time.monotonic()
    assert (await ws.exchange({"type": "share", "board": "lobby"}))["after_s"] == 1.0
    await ws.exchange({"type": "update", "seq": 1, "features": PERSON})
    assert await kiosk.receive_nothing(timeout=0.5)
    event = await kiosk.receive_json_from(timeout=TIMEOUT)
    assert event["type"] == "session" and time.monotonic() - started >= 1.0
    await ws.disconnect()  # leaving stops sharing
    assert await kiosk.receive_json_from(timeout=TIMEOUT) == {"type": "session_end", "id": event["id"]}
    await kiosk.disconnect()


async def test_sharing_stopped_before_the_delay_never_shows(served_model, fresh_boards, settings, open_socket):
    settings.BOARD_DELAY_S = 0.5
    kiosk = await open_socket("/ws/kiosk/lobby/")
    await kiosk.receive_json_from(timeout=TIMEOUT)
    ws = await open_socket()
    await ws.exchange({"type": "share", "board": "lobby"})
    await ws.exchange({"type": "update", "seq": 1, "features": PERSON})
    await ws.exchange({"type": "share", "board": None})
    assert await kiosk.receive_nothing(timeout=1.0)
    await ws.disconnect()
    await kiosk.disconnect()


async def test_moving_to_another_board_leaves_the_first(served_model, fresh_boards, open_socket):
    lobby = await open_socket("/ws/kiosk/lobby/")
    ward = await open_socket("/ws/kiosk/ward/")
    for kiosk in (lobby, ward):
        await kiosk.receive_json_from(timeout=TIMEOUT)
    ws = await open_socket()
    await ws.exchange({"type": "update", "seq": 1, "features": PERSON})
    await ws.exchange({"type": "share", "board": "lobby"})
    first = await lobby.receive_json_from(timeout=TIMEOUT)
    await ws.exchange({"type": "share", "board": "ward"})
    assert await lobby.receive_json_from(timeout=TIMEOUT) == {"type": "session_end", "id": first["id"]}
    second = await ward.receive_json_from(timeout=TIMEOUT)
    assert second["type"] == "session" and second["id"] != first["id"]  # nothing links the two tiles
    await ws.disconnect()
    await lobby.disconnect()
    await ward.disconnect()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "share", "board": "a b"},
        {"type": "share", "board": "x" * 65},
        {"type": "share", "board": 7},
        {"type": "share"},
        {"type": "share", "board": "lobby", "seq": 1},
    ],
)
async def test_a_wrong_share_frame_gets_an_error_and_shares_nothing(served_model, fresh_boards, open_socket, frame):
    kiosk = await open_socket("/ws/kiosk/lobby/")
    await kiosk.receive_json_from(timeout=TIMEOUT)
    ws = await open_socket()
    reply = await ws.exchange(frame)
    assert reply["type"] == "error" and reply["code"] == "bad_message" and reply["seq"] is None
    assert (await ws.exchange({"type": "update", "seq": 1, "features": PERSON}))["type"] == "prediction"
    assert await kiosk.receive_nothing(timeout=0.5)
    await ws.disconnect()
    await kiosk.disconnect()


async def test_the_live_socket_does_not_listen_on_the_channel_layer(served_model, monkeypatch, open_socket):
    def no_layer(*args, **kwargs):
        raise AssertionError("the live consumer must not depend on the channel layer")

    monkeypatch.setattr("channels.layers.InMemoryChannelLayer.new_channel", no_layer)
    monkeypatch.setattr("channels.layers.InMemoryChannelLayer.receive", no_layer)
    ws = await open_socket()
    assert (await ws.exchange({"type": "update", "seq": 1, "features": PERSON}))["type"] == "prediction"
    await ws.disconnect()


async def test_group_send_quietly_logs_a_layer_failure_instead_of_raising(monkeypatch, caplog):
    class BrokenLayer:
        async def group_send(self, group, message):
            raise ConnectionError("Redis is gone")

    monkeypatch.setattr("live.layer.get_channel_layer", lambda: BrokenLayer())
    monkeypatch.setattr("live.layer._last_warning", 0.0)
    with caplog.at_level(logging.WARNING, logger="live.layer"):
        assert await group_send_quietly("kiosk.lobby", {"type": "kiosk.result", "risk": 0.25}) is False
    assert "Redis is gone" in caplog.text and "0.25" not in caplog.text


async def test_group_send_quietly_sends_on_a_working_layer():
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add("kiosk.test", channel)
    assert await group_send_quietly("kiosk.test", {"type": "kiosk.result"}) is True
    assert await layer.receive(channel) == {"type": "kiosk.result"}


@pytest.fixture
def asgi_application(monkeypatch):
    monkeypatch.setattr(active_model, "start_watcher", lambda interval: None)
    return importlib.import_module("asgi").application


async def test_the_handshake_is_refused_for_a_foreign_origin(served_model, asgi_application, open_socket):
    await open_socket(application=asgi_application, headers=[(b"origin", b"http://evil.example")], accepted=False)


async def test_the_handshake_is_accepted_from_the_site_itself(served_model, asgi_application, open_socket):
    ws = await open_socket(
        application=asgi_application, headers=[(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
    )
    assert (await ws.exchange({"type": "update", "seq": 0, "features": PERSON}))["type"] == "prediction"
    await ws.disconnect()


def open_live_sockets() -> float:
    value = REGISTRY.get_sample_value("diabetes_open_websockets", {"kind": "live"})
    assert value is not None, "the open-sockets gauge is not registered"
    return value


async def test_an_update_with_hundreds_of_unknown_keys_gets_a_small_error(served_model, open_socket):
    ws = await open_socket()
    before = open_live_sockets()
    unknown = {f"k{i:03d}": 1 for i in range(480)}  # about 5 KB of frame
    reply = await ws.exchange({"type": "update", "seq": 1, "features": {"glucose": 148, **unknown}})
    assert reply["type"] == "error" and reply["seq"] == 1
    assert len(json.dumps(reply)) < 2048
    assert reply["errors"]["non_field_errors"] == ["And 477 more unknown features."]
    assert (await ws.exchange({"type": "update", "seq": 2, "features": {"age": 50}}))["type"] == "prediction"
    await ws.disconnect()
    assert open_live_sockets() == before - 1


async def test_a_lone_surrogate_key_gets_an_error_frame(served_model, open_socket):
    ws = await open_socket()
    reply = await ws.exchange_text('{"type": "update", "seq": 1, "features": {"\\ud800": 1}}')
    assert reply["type"] == "error" and reply["seq"] == 1 and list(reply["errors"]) == ["\ud800"]
    await ws.disconnect()


class SendRefused(Exception):
    """What a server raises when it cannot take a message (autobahn's PayloadExceededError, a closed transport)."""


@pytest.mark.parametrize("refuse", ["replies", "replies and closes"])
async def test_a_refused_send_still_releases_the_socket(served_model, fresh_boards, refuse, open_socket, application):
    """Whatever send raises, the gauge goes down once, the answering task ends and the tile leaves the board."""
    failing = asyncio.Event()

    async def refusing_server(scope, receive, send):
        async def checked_send(message):
            if failing.is_set() and (message["type"] == "websocket.send" or refuse == "replies and closes"):
                raise SendRefused("the server refused the message")
            await send(message)

        await application(scope, receive, checked_send)

    kiosk = await open_socket("/ws/kiosk/cleanup/")
    assert (await kiosk.receive_json_from(timeout=TIMEOUT))["sessions"] == []
    before = open_live_sockets()
    ws = await open_socket(application=refusing_server)
    assert open_live_sockets() == before + 1
    assert (await ws.exchange({"type": "share", "board": "cleanup"}))["type"] == "shared"
    assert (await ws.exchange({"type": "update", "seq": 1, "features": PERSON}))["type"] == "prediction"
    tile = await kiosk.receive_json_from(timeout=TIMEOUT)
    assert tile["type"] == "session"
    failing.set()
    await ws.send_json_to({"type": "update", "seq": 2, "features": {"age": 60}})
    if refuse == "replies":
        assert await ws.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 1011}
    # Released at once, before the server reports the disconnect.
    assert await kiosk.receive_json_from(timeout=TIMEOUT) == {"type": "session_end", "id": tile["id"]}
    assert open_live_sockets() == before
    # The answering task ends as it returns from the cleanup that sent the session_end, which
    # the kiosk may have relayed a few event-loop turns earlier.
    for _ in range(200):
        if not [t for t in asyncio.all_tasks() if "_answer_pending" in repr(t.get_coro())]:
            break
        await asyncio.sleep(0.01)
    assert [t for t in asyncio.all_tasks() if "_answer_pending" in repr(t.get_coro())] == []
    await ws.send_input({"type": "websocket.disconnect", "code": 1011})
    await asyncio.wait_for(ws.future, TIMEOUT)  # the application ends without an exception
    assert ws.future.exception() is None
    assert open_live_sockets() == before  # and counted down only once
    await kiosk.disconnect()


async def test_a_refused_error_reply_in_the_receive_loop_ends_the_socket(served_model, open_socket, application):
    async def refusing_server(scope, receive, send):
        async def checked_send(message):
            if message["type"] == "websocket.send" and '"errors"' in message["text"]:
                raise SendRefused("payload exceeded")
            await send(message)

        await application(scope, receive, checked_send)

    before = open_live_sockets()
    ws = await open_socket(application=refusing_server)
    await ws.send_json_to({"type": "update", "seq": 1, "features": {"shoe_size": 9}})
    assert await ws.receive_output(timeout=TIMEOUT) == {"type": "websocket.close", "code": 1011}
    await asyncio.wait_for(ws.future, TIMEOUT)  # the receive loop ends by itself after closing
    assert ws.future.exception() is None
    assert open_live_sockets() == before


async def test_a_reply_over_the_reply_limit_is_replaced_by_a_short_error(served_model, monkeypatch, open_socket):
    def huge(**kwargs):
        raise FeatureValidationError({"glucose": ["x" * 100_000]})

    monkeypatch.setattr(consumers, "live_state_merge", huge)
    ws = await open_socket()
    reply = await ws.exchange({"type": "update", "seq": 1, "features": {"glucose": 1}})
    assert reply == consumers.REPLY_FAILED
    await ws.disconnect()
