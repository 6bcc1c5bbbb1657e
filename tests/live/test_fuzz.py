"""Property-based tests: whatever a client sends, the live consumer answers or closes correctly.

Hypothesis generates frames (arbitrary JSON, messages with wrong types, huge numbers, deep nesting,
long strings and odd unicode, binary frames, frames just under and over 64 KiB) and sends them one
at a time, waiting for each reply, to an in-process consumer. Every frame must get exactly one
reply of a known type, or, for a frame over 64 KiB, the socket closes with 1009; the application
never crashes, and a calm socket opened at the start still answers correctly at the end.

The flood limit's clock is driven by the test (20 ms per frame, half the sustained rate), so the
rate limit never interferes here; tests/live/test_flood.py covers it.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.testing import WebsocketCommunicator
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from live.consumers import MAX_FRAME_BYTES
from ml_engine.models import Interface
from ml_engine.schema import FEATURE_KEYS
from ml_engine.services import predict
from tests.samples import PERSON, TIMEOUT

EXAMPLES = 120
FRAMES_PER_EXAMPLE = (9, 14)  # at least 120 × 9 = 1080 frames

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**400, -(10**400), 2**53, 2**63, -1, 0])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([float("nan"), float("inf"), -float("inf"), -0.0, 1e308, 5e-324])
    | st.text(max_size=40)
    | st.text(alphabet=st.characters(codec="utf-8"), min_size=1000, max_size=4000)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children),
    max_leaves=20,
)


class Update:
    """A well-formed-looking update whose seq is the next one at send time (so it can succeed)."""

    def __init__(self, kind: object, features: object) -> None:
        self.kind, self.features = kind, features

    def frame(self, seq: int) -> str:
        return json.dumps({"type": self.kind, "seq": seq, "features": self.features}, allow_nan=True)


def _sized(target: int, char: str, as_json: bool) -> str:
    body = char * (target // len(char.encode()))
    return json.dumps(body, ensure_ascii=False) if as_json else body


text_frames = st.one_of(
    json_values.map(lambda v: json.dumps(v, allow_nan=True)),  # any JSON (NaN/Infinity literals included)
    st.text(max_size=200),  # mostly not JSON
    st.fixed_dictionaries(
        {"type": st.sampled_from(["update", "reset", "Update", "", "ping"]) | json_values, "seq": json_values}
    ).map(lambda v: json.dumps(v, allow_nan=True)),
    st.integers(1, 12_000).map(lambda n: "[" * n + "]" * n),  # deep nesting: RecursionError in json
    st.integers(1, 12_000).map(lambda n: '{"a":' * n + "1" + "}" * n),
    st.tuples(st.integers(MAX_FRAME_BYTES - 48, MAX_FRAME_BYTES + 48), st.sampled_from("xé€😀"), st.booleans()).map(
        lambda t: _sized(*t)
    ),
)
updates = st.builds(
    Update,
    st.sampled_from(["update", "update", "update", "reset"]),
    st.dictionaries(st.sampled_from([*FEATURE_KEYS, "shoe_size", ""]), json_values | st.floats(0, 300), max_size=8)
    | json_values,
)
binary_frames = st.binary(max_size=300) | st.integers(MAX_FRAME_BYTES - 8, MAX_FRAME_BYTES + 8).map(bytes)
frames = st.lists(st.one_of(text_frames, updates, binary_frames), min_size=FRAMES_PER_EXAMPLE[0],
                  max_size=FRAMES_PER_EXAMPLE[1])  # fmt: skip


def _too_big(frame: str | bytes) -> bool:
    size = len(frame) if isinstance(frame, bytes) else len(frame.encode("utf-8", "surrogatepass"))
    return size > MAX_FRAME_BYTES


def _own_seq(frame: str | bytes) -> int | None:
    """The seq of a frame that is an update or reset with a whole-number seq, else None."""
    try:
        content = json.loads(frame)
    except (ValueError, RecursionError):
        return None
    if not isinstance(content, dict) or content.get("type") not in ("update", "reset"):
        return None
    seq = content.get("seq")
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else None


async def send_and_check(ws: WebsocketCommunicator, frame: str | bytes, seq: int | None) -> bool:
    """Send one frame; check its one reply. False when the socket was (rightly) closed."""
    # send_input, not send_to: the communicator's helper refuses empty frames, a client may not.
    key = "bytes" if isinstance(frame, bytes) else "text"
    await ws.send_input({"type": "websocket.receive", key: frame})
    output = await ws.receive_output(timeout=TIMEOUT)
    if _too_big(frame):
        assert output == {"type": "websocket.close", "code": 1009}
        await ws.disconnect(code=1009)
        return False
    assert output["type"] == "websocket.send", output
    reply = json.loads(output["text"])
    assert reply["type"] in ("prediction", "cleared", "error"), reply
    if seq is None:  # a generated frame may itself be a well-formed update or reset: its seq is answered
        seq = _own_seq(frame)
    if reply["type"] == "error" and reply["seq"] is None:
        assert reply["code"] in ("bad_json", "bad_message"), reply
        assert isinstance(reply["detail"], str)
    elif reply["type"] == "error":
        assert seq is not None and reply["seq"] == seq and reply["errors"], reply
        assert all(isinstance(m, str) for messages in reply["errors"].values() for m in messages), reply
    else:
        assert seq is not None and reply["seq"] == seq, reply
    if isinstance(frame, bytes):
        assert reply["code"] == "bad_message"
    assert not ws.future.done(), "the application must still be running"
    return True


@pytest.mark.slow
def test_generated_frames_are_always_answered_or_closed_correctly(served_model, clock, sockets):
    # Its own event loop: Hypothesis drives each example from a plain function.
    loop = asyncio.new_event_loop()
    sent = {"frames": 0, "closed": 0}
    try:
        calm = loop.run_until_complete(sockets.open())

        async def run(batch: list) -> None:
            ws = await sockets.open()
            seq = 0
            for item in batch:
                clock.now += 0.02
                frame_seq = None
                if isinstance(item, Update):
                    seq += 1
                    frame_seq = seq
                    frame = item.frame(seq)
                else:
                    frame = item
                sent["frames"] += 1
                if not await send_and_check(ws, frame, frame_seq):
                    sent["closed"] += 1
                    ws, seq = await sockets.open(), 0
            assert await ws.receive_nothing(timeout=0.02), "one reply per frame"
            await ws.disconnect()

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=[
                HealthCheck.function_scoped_fixture,
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
            ],
        )
        @given(batch=frames)
        # Generated frames that are themselves well formed: each is answered with its own seq.
        @example(batch=['{"type":"reset","seq":0}', '{"type":"update","seq":1,"features":{"glucose":120}}'])
        def check(batch: list) -> None:
            loop.run_until_complete(run(batch))

        check()

        async def calm_still_answers() -> dict:
            await calm.send_json_to({"type": "update", "seq": 1, "features": PERSON})
            reply = await calm.receive_json_from(timeout=TIMEOUT)
            await calm.disconnect()
            return reply

        reply = loop.run_until_complete(calm_still_answers())
    finally:
        loop.run_until_complete(sockets.close_all())  # whatever failed, no socket is left open
        loop.close()
    assert sent["frames"] >= 1000, sent
    assert sent["closed"] > 0, "some frames over 64 KiB were generated"
    assert reply["type"] == "prediction" and reply["seq"] == 1
    assert reply["risk"] == pytest.approx(predict(features=PERSON, interface=Interface.WS).risk, abs=1e-9)
