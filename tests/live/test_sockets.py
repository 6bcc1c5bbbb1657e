"""Open sockets per address, per board and per process (live/sockets.py), with Channels'
communicator in front of the project's routes: each test has one address hit a limit while a
bystander on another address is still served. The same counts in a real redis-server, shared by
two processes' worth of slots, and what happens when Redis is down."""

from __future__ import annotations

import asyncio
import logging

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from live import consumers, ratelimit, sockets
from live.routing import websocket_urlpatterns
from tests.samples import PERSON, TIMEOUT

ATTACKER = "127.0.0.1"
BYSTANDER = "127.0.0.2"


def from_address(app, address: str):
    """``app`` as reached from ``address`` (daphne puts the peer in the scope; the communicator
    does not)."""

    async def with_client(scope, receive, send):
        return await app({**scope, "client": (address, 40000)}, receive, send)

    return with_client


@pytest.fixture
def limited(settings, fresh_boards):
    """The WebSocket routes behind ``SocketLimits``, counted in this process (no Redis), with
    small limits; a fresh count for the test."""
    settings.REDIS_URL = ""
    settings.WEBSOCKET_MAX_PER_ADDRESS = 3
    settings.KIOSKS_PER_ADDRESS = 2
    settings.KIOSKS_PER_BOARD = 3
    settings.WEBSOCKET_MAX_PER_PROCESS = 0
    sockets.slots = sockets.SocketSlots()
    return sockets.SocketLimits(URLRouter(websocket_urlpatterns))


class Opened:
    def __init__(self, app) -> None:
        self.app = app
        self.sockets: list[WebsocketCommunicator] = []

    async def __call__(self, address: str, path: str = "/ws/predict/") -> tuple[bool, WebsocketCommunicator]:
        socket = WebsocketCommunicator(from_address(self.app, address), path)
        connected, _ = await socket.connect(timeout=TIMEOUT)
        if connected:
            self.sockets.append(socket)
        return connected, socket

    async def close_all(self) -> None:
        for socket in self.sockets:
            await socket.disconnect(timeout=TIMEOUT)


@pytest.fixture
async def opened(limited):
    opener = Opened(limited)
    yield opener
    await opener.close_all()


async def test_one_address_is_capped_and_a_bystander_is_still_served(opened, served_model):
    for _ in range(3):
        assert (await opened(ATTACKER))[0]
    refused, _ = await opened(ATTACKER)
    assert refused is False
    accepted, bystander = await opened(BYSTANDER)
    assert accepted
    await bystander.send_json_to({"type": "update", "seq": 1, "features": PERSON})
    assert (await bystander.receive_json_from(timeout=TIMEOUT))["type"] == "prediction"
    # A closed socket gives its slot back at once.
    first = opened.sockets.pop(0)
    await first.disconnect(timeout=TIMEOUT)
    assert (await opened(ATTACKER))[0]


async def test_kiosks_are_capped_per_address_and_per_board(opened):
    for _ in range(2):
        assert (await opened(ATTACKER, "/ws/kiosk/lobby/"))[0]
    assert (await opened(ATTACKER, "/ws/kiosk/lobby/"))[0] is False  # KIOSKS_PER_ADDRESS
    assert (await opened(ATTACKER, "/ws/kiosk/ward/"))[0] is False  # per address, whatever the board
    assert (await opened(ATTACKER))[0]  # live sockets are counted apart
    accepted, kiosk = await opened(BYSTANDER, "/ws/kiosk/lobby/")
    assert accepted and (await kiosk.receive_json_from(timeout=TIMEOUT))["type"] == "snapshot"
    # The board holds three kiosks now: a fourth, from yet another address, waits for a free one.
    assert (await opened("127.0.0.3", "/ws/kiosk/lobby/"))[0] is False
    assert (await opened("127.0.0.3", "/ws/kiosk/ward/"))[0]


async def test_the_process_cap_holds_whatever_the_mix_of_addresses(opened, settings):
    settings.WEBSOCKET_MAX_PER_PROCESS = 4
    for i in range(4):
        assert (await opened(f"127.0.1.{i}"))[0]
    assert (await opened("127.0.1.9"))[0] is False
    assert sockets.process_cap() == 4


def test_the_default_process_cap_leaves_descriptors_for_everything_else(settings):
    import resource

    settings.WEBSOCKET_MAX_PER_PROCESS = 0
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert sockets.process_cap() == max(16, soft - sockets.DESCRIPTOR_RESERVE)


async def test_a_refusal_is_counted_by_kind_and_limit(opened):
    from prometheus_client import REGISTRY

    def refused(kind: str, limit: str) -> float:
        return REGISTRY.get_sample_value("diabetes_websockets_refused_total", {"kind": kind, "limit": limit}) or 0.0

    before = refused("live", "address")
    for _ in range(4):
        await opened(ATTACKER)
    assert refused("live", "address") == before + 1


@pytest.mark.redis
class TestSharedCounts:
    """Two ``SocketSlots`` on one redis-server: two processes' views of the same counts."""

    CLAIMS = (sockets.Claim("sockets:live:test-attacker", 3, "address"),)

    @pytest.fixture(autouse=True)
    def shared(self, redis_server, settings):
        settings.REDIS_URL = redis_server.url
        self.server = redis_server

    async def test_the_cap_holds_across_processes(self):
        a, b = sockets.SocketSlots(), sockets.SocketSlots()
        taken = [await a.take(self.CLAIMS), await b.take(self.CLAIMS), await a.take(self.CLAIMS)]
        assert all(member for member, _ in taken)
        assert await b.take(self.CLAIMS) == (None, "address")
        a.give_back(taken[0][0])
        for _ in range(100):  # given back on a task of its own
            member, _ = await b.take(self.CLAIMS)
            if member:
                break
            await asyncio.sleep(0.02)
        assert member

    async def test_slots_of_a_process_that_died_expire(self, monkeypatch):
        monkeypatch.setattr(sockets, "SLOT_TTL_SECONDS", 0.3)
        dead = sockets.SocketSlots()
        for _ in range(3):
            assert (await dead.take(self.CLAIMS))[0]
        alive = sockets.SocketSlots()
        assert (await alive.take(self.CLAIMS))[0] is None
        await asyncio.sleep(0.5)
        assert (await alive.take(self.CLAIMS))[0]

    async def test_with_redis_down_each_process_counts_every_socket_it_holds(self, caplog):
        process = sockets.SocketSlots()
        held = [await process.take(self.CLAIMS) for _ in range(2)]
        assert all(member for member, _ in held)
        self.server.kill()
        with caplog.at_level(logging.WARNING, logger="live.sockets"):
            assert (await process.take(self.CLAIMS))[0]  # the third, counted here
            assert await process.take(self.CLAIMS) == (None, "address")  # never no limit
            assert await process.take(self.CLAIMS) == (None, "address")
        assert caplog.text.count("cannot reach Redis") == 1  # logged once per outage
        self.server.start()


async def test_one_addresss_sockets_share_a_budget_of_answers_and_a_bystander_is_not_held_up(
    opened, served_model, settings, monkeypatch
):
    # live/ratelimit.py AddressBudgets: 20 answers a second (bursts of 40) for the attacker's
    # sockets together; every socket's newest state is still answered, only later.
    settings.WEBSOCKET_ANSWERS_PER_ADDRESS = 20.0
    settings.WEBSOCKET_MAX_PER_ADDRESS = 20
    monkeypatch.setattr(consumers, "budgets", ratelimit.AddressBudgets())
    attackers = [(await opened(ATTACKER))[1] for _ in range(10)]
    started = asyncio.get_running_loop().time()
    for seq in range(8):  # 80 updates at once: twice the burst
        for ws in attackers:
            await ws.send_json_to({"type": "update", "seq": seq, "features": {**PERSON, "age": 20 + seq}})
    _, bystander = await opened(BYSTANDER)
    await bystander.send_json_to({"type": "update", "seq": 0, "features": PERSON})
    assert (await bystander.receive_json_from(timeout=TIMEOUT))["type"] == "prediction"
    assert asyncio.get_running_loop().time() - started < 1.0  # its own budget, at once
    for ws in attackers:  # each attacker socket's newest state is answered in the end
        seq = -1
        while seq < 7:
            reply = await ws.receive_json_from(timeout=TIMEOUT)
            assert reply["type"] == "prediction"
            seq = reply["seq"]
