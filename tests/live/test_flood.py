"""Flood control on the live socket: the token bucket, the consumer's policy, and 1008 through daphne."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
import websockets
from channels.testing import WebsocketCommunicator

from live import consumers
from live.ratelimit import FloodGuard, TokenBucket, Verdict
from tests.samples import PERSON, TIMEOUT
from tests.servers import daphne_servers


def test_the_bucket_starts_full_and_refills_at_its_rate(clock):
    bucket = TokenBucket(rate=10, burst=3)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.wait_for_token() == pytest.approx(0.1)
    clock.now += 0.1
    assert bucket.take() and not bucket.take()
    clock.now += 100
    assert bucket.level() == 3  # never more than the burst


def test_the_guard_warns_once_then_drops_then_closes_a_sustained_flood(clock):
    guard = FloodGuard(rate=100, burst=200, close_after=2.0)
    assert all(guard.frame() is Verdict.OK for _ in range(200))
    assert guard.frame() is Verdict.WARN
    verdicts = []
    while Verdict.CLOSE not in verdicts and len(verdicts) < 5000:  # 1000 frames a second
        clock.now += 0.001
        verdicts.append(guard.frame())
    assert 1999 <= len(verdicts) <= 2010  # closed 2 s after the warning
    assert Verdict.WARN not in verdicts and verdicts.count(Verdict.CLOSE) == 1
    assert verdicts.count(Verdict.OK) == pytest.approx(200, abs=2)  # the rate still gets through


def test_a_client_that_slows_down_after_the_warning_is_not_closed(clock):
    guard = FloodGuard(rate=100, burst=200, close_after=2.0)
    for _ in range(200):
        guard.frame()
    assert guard.frame() is Verdict.WARN
    verdicts = []
    for _ in range(1000):  # 50 frames a second for 20 s
        clock.now += 0.02
        verdicts.append(guard.frame())
    assert set(verdicts) == {Verdict.OK}
    assert not guard.limited and guard.reply_delay() == 0
    later = [guard.frame() for _ in range(400)]  # a new flood later is a new episode, with a new warning
    assert later.count(Verdict.WARN) == 1 and later.index(Verdict.WARN) >= 199


def test_a_short_burst_above_the_rate_is_never_closed(clock):
    guard = FloodGuard(rate=100, burst=200, close_after=2.0)
    verdicts = [guard.frame() for _ in range(5000)]  # all at the same instant
    assert verdicts.count(Verdict.WARN) == 1 and Verdict.CLOSE not in verdicts


async def replies_until(ws: WebsocketCommunicator, done) -> list[dict]:
    replies = []
    while True:
        output = await ws.receive_output(timeout=TIMEOUT)
        if output["type"] == "websocket.close":
            replies.append(output)
            return replies
        reply = json.loads(output["text"])
        replies.append(reply)
        if done(reply):
            return replies


async def test_a_burst_is_warned_once_and_the_newest_update_is_still_answered(served_model, clock, open_socket):
    ws = await open_socket()
    calm = await open_socket()
    for seq in range(400):
        await ws.send_json_to({"type": "update", "seq": seq, "features": {"glucose": 60 + seq % 300}})
    # The last frames were over the limit: read, merged and answered once the client is quiet.
    await ws.send_json_to({"type": "update", "seq": 400, "features": {"age": 67}})
    replies = await replies_until(ws, lambda r: r.get("type") == "prediction" and r["seq"] == 400)
    limited = [r for r in replies if r.get("code") == "rate_limited"]
    assert limited == [consumers.RATE_LIMITED]
    assert {r["type"] for r in replies} <= {"prediction", "error"}
    assert replies[-1]["features"]["glucose"] == 60 + 399 % 300 and replies[-1]["features"]["age"] == 67
    seqs = [r["seq"] for r in replies if r["type"] == "prediction"]
    assert seqs == sorted(set(seqs))
    assert await ws.receive_nothing(timeout=0.2)
    # The other socket on the same process is untouched.
    assert (await calm.exchange({"type": "update", "seq": 0, "features": PERSON}))["type"] == "prediction"
    await ws.disconnect()
    await calm.disconnect()


async def test_over_the_limit_bad_frames_get_no_reply(served_model, clock, open_socket):
    ws = await open_socket()
    for _ in range(200):
        await ws.send_to(text_data="{")
    for _ in range(200):
        assert (await ws.receive_json_from(timeout=TIMEOUT))["code"] == "bad_json"
    await ws.send_to(text_data="{")
    assert await ws.receive_json_from(timeout=TIMEOUT) == consumers.RATE_LIMITED
    for _ in range(50):
        await ws.send_to(text_data="{")
    assert await ws.receive_nothing(timeout=0.3)
    clock.now += 10  # quiet for a while: back to normal
    assert (await ws.exchange({"type": "update", "seq": 1, "features": {"bmi": 41.37}}))["type"] == "prediction"
    await ws.disconnect()


async def test_a_sustained_flood_is_closed_with_1008(served_model, clock, open_socket):
    ws = await open_socket()
    for seq in range(3000):  # 1000 frames a second for 3 s of the guard's clock
        clock.now += 0.001
        await ws.send_json_to({"type": "update", "seq": seq, "features": {"glucose": 100}})
        await asyncio.sleep(0)  # the consumer reads each frame at its own time
    replies = await replies_until(ws, lambda r: False)
    assert replies[-1] == {"type": "websocket.close", "code": 1008}
    assert [r for r in replies[:-1] if r.get("type") == "error"] == [consumers.RATE_LIMITED]
    await ws.disconnect(code=1008)
    calm = await open_socket()
    assert (await calm.exchange({"type": "update", "seq": 0, "features": PERSON}))["type"] == "prediction"
    await calm.disconnect()


async def test_the_flood_close_falls_back_to_4008_where_1008_is_refused(
    served_model, clock, open_socket, autobahn_close_codes
):
    ws = await open_socket(application=autobahn_close_codes)
    for seq in range(3000):
        clock.now += 0.001
        await ws.send_json_to({"type": "reset", "seq": seq})
        await asyncio.sleep(0)
    replies = await replies_until(ws, lambda r: False)
    assert replies[-1] == {"type": "websocket.close", "code": 4008, "reason": "Too many messages"}
    await ws.disconnect(code=4008)


@pytest.mark.slow
def test_daphne_sends_1008_to_a_flooding_client_and_serves_a_calm_one(server_env):
    async def scenario(server) -> tuple[int | None, list[dict], dict]:
        origin = server.http
        url = f"{server.ws}/ws/predict/"
        async with (
            websockets.connect(url, origin=origin, open_timeout=TIMEOUT) as calm,
            websockets.connect(url, origin=origin, open_timeout=TIMEOUT, max_queue=None) as flood,
        ):
            errors: list[dict] = []

            async def read() -> None:
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for text in flood:
                        message = json.loads(text)
                        if message["type"] == "error":
                            errors.append(message)

            reader = asyncio.create_task(read())
            try:
                async with asyncio.timeout(60):
                    seq = 0
                    while True:  # as fast as the connection takes them, until the server closes it
                        await flood.send(json.dumps({"type": "update", "seq": seq, "features": {"glucose": 99}}))
                        seq += 1
                        if seq % 50 == 0:
                            await asyncio.sleep(0)
            except (websockets.ConnectionClosed, OSError):
                pass
            await asyncio.wait_for(reader, TIMEOUT)
            code = flood.protocol.close_rcvd.code if flood.protocol.close_rcvd else None
            await calm.send(json.dumps({"type": "update", "seq": 0, "features": PERSON}))
            answer = json.loads(await asyncio.wait_for(calm.recv(), TIMEOUT))
            return code, errors, answer

    with daphne_servers(server_env) as [server]:
        code, errors, answer = asyncio.run(scenario(server))
        assert code == 1008, server.log()
        assert errors == [consumers.RATE_LIMITED]
        assert answer["type"] == "prediction" and answer["seq"] == 0
        assert "Traceback" not in server.log(), server.log()
