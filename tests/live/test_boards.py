"""Board stores (the Redis one against a real redis-server, and the in-memory one), snapshots
and the publisher's retries."""

import asyncio
import json
import time

import pytest

from live import boards

pytestmark = pytest.mark.redis

WAIT = 30  # seconds: an upper bound for things that happen much sooner, on a shared machine


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return boards.MemoryBoardStore()
    server = request.getfixturevalue("redis_server")
    return boards.RedisBoardStore(server.url)


def entry(sid, risk=0.5, band="moderate", updated_at=None):
    return boards.Entry(
        id=sid, risk=risk, band=band, percent=round(100 * risk), updated_at=updated_at or boards.now_iso()
    )


async def eventually(check, what: str):
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def placed(store, board, item, owner=""):
    return (await store.put(board, item, owner)).placed


async def test_put_touch_remove(store):
    assert await placed(store, "b", entry("one")) is boards.Placed.NEW
    assert await placed(store, "b", entry("one", 0.6)) is boards.Placed.UPDATED
    assert [e.risk for e in await store.entries("b")] == [0.6]
    assert await store.count("b") == 1
    assert await store.touch("b", "one") is True
    assert await store.touch("b", "nobody") is False
    assert await store.remove("b", "one") is True
    assert await store.remove("b", "one") is False
    assert await store.entries("b") == []


async def test_prune_removes_only_stale_entries_once(store, monkeypatch):
    await store.put("b", entry("old"))
    monkeypatch.setattr(boards, "EXPIRY_SECONDS", 0.2)
    await asyncio.sleep(0.3)
    await store.put("b", entry("fresh"))
    assert await store.prune("b") == ["old"]
    assert await store.prune("b") == []
    assert [e.id for e in await store.entries("b")] == ["fresh"]


async def test_a_full_board_of_one_owner_keeps_its_sessions_and_refuses_that_owners_new_ones(store, monkeypatch):
    monkeypatch.setattr(boards, "MAX_SESSIONS", 3)
    for sid in ("a", "b", "c"):
        assert await placed(store, "full", entry(sid), "x") is boards.Placed.NEW
    assert await store.put("full", entry("d"), "x") == (boards.Placed.FULL, None)
    assert await placed(store, "full", entry("a", 0.9, "high"), "x") is boards.Placed.UPDATED  # members still update
    assert await store.touch("full", "d") is False
    assert sorted(e.id for e in await store.entries("full")) == ["a", "b", "c"]
    await store.remove("full", "b")
    assert await placed(store, "full", entry("d"), "x") is boards.Placed.NEW  # a freed place is taken


async def test_a_full_board_gives_a_newcomer_the_oldest_place_of_the_owner_holding_most(store, monkeypatch):
    # docs/kiosk.md, "Fair shares of a board": max-min fairness between owners (address groups).
    monkeypatch.setattr(boards, "MAX_SESSIONS", 4)
    for sid in ("x1", "x2", "x3", "x4"):
        await store.put("fair", entry(sid), "attacker")
        await asyncio.sleep(0.002)  # distinct join times: "oldest" is well defined
    assert await store.put("fair", entry("p1"), "person") == (boards.Placed.NEW, "x1")
    assert await store.put("fair", entry("q1"), "other") == (boards.Placed.NEW, "x2")
    # attacker 2, person 1, other 1: the person's second session would leave it at 2 against the
    # attacker's 1, no fairer than now, so it waits.
    assert await store.put("fair", entry("p2"), "person") == (boards.Placed.FULL, None)
    assert await store.put("fair", entry("r1"), "third") == (boards.Placed.NEW, "x3")
    assert sorted(e.id for e in await store.entries("fair")) == ["p1", "q1", "r1", "x4"]
    # The attacker's new sessions never take a place back from anyone holding fewer.
    assert await store.put("fair", entry("x5"), "attacker") == (boards.Placed.FULL, None)
    # A displaced session is simply off the board: touching it says so, and its owner's count fell.
    assert await store.touch("fair", "x1") is False
    await store.remove("fair", "x4")
    assert await store.put("fair", entry("p2"), "person") == (boards.Placed.NEW, None)


async def test_fair_shares_hold_when_many_owners_race_for_a_full_board(store, monkeypatch):
    monkeypatch.setattr(boards, "MAX_SESSIONS", 20)
    await asyncio.gather(*(store.put("race", entry(f"a{i}"), "attacker") for i in range(40)))
    await asyncio.gather(*(store.put("race", entry(f"{who}{i}"), who) for who in "pqrs" for i in range(5)))
    owners = {}
    for e in await store.entries("race"):
        owner = "attacker" if e.id.startswith("a") else e.id[0]
        owners[owner] = owners.get(owner, 0) + 1
    assert sum(owners.values()) == 20
    assert owners == {"attacker": 4, "p": 4, "q": 4, "r": 4, "s": 4}


async def test_every_board_key_has_a_ttl_refreshed_by_activity(redis_server, monkeypatch):
    import redis.asyncio as redis

    store = boards.RedisBoardStore(redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    try:
        await store.put("ttl", entry("one"))
        keys = sorted(k.decode() for k in await client.keys("board:ttl:*"))
        assert keys == ["board:ttl:entries", "board:ttl:owners", "board:ttl:seen", "board:ttl:shares"]
        for key in keys:
            assert 0 < await client.pttl(key) <= boards.KEY_TTL_SECONDS * 1000
        for key in keys:
            await client.pexpire(key, 50_000)
        await store.touch("ttl", "one")  # activity brings the TTL back to KEY_TTL_SECONDS
        for key in keys:
            assert 0 < await client.pttl(key) <= boards.KEY_TTL_SECONDS * 1000

        # A board nobody writes to any more (every process died) leaves nothing behind.
        monkeypatch.setattr(boards, "KEY_TTL_SECONDS", 0.3)
        await store.put("ttl", entry("two"))

        async def gone():
            return not await client.exists(*keys)

        await eventually(gone, "the board's keys did not expire")
        assert await store.entries("ttl") == []
    finally:
        await client.aclose()


def test_stats_count_bands():
    assert boards.stats([entry("a", 0.1, "low"), entry("b", 0.9, "high"), entry("c", 0.8, "high")]) == {
        "active": 3,
        "by_band": {"low": 1, "moderate": 0, "high": 2},
    }


@pytest.mark.parametrize("id_length", [12, 1000])
def test_a_snapshot_is_bounded_whatever_the_board_holds(id_length):
    # A full board of the longest entries the code can write (and ids far longer than it makes).
    full = [
        entry(
            f"{i:0{id_length}d}",
            0.12345678901234568,
            "moderate",
            f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}.{i % 1000:03d}Z",
        )
        for i in range(boards.MAX_SESSIONS)
    ]
    message = boards.snapshot_message("b" * 64, full)
    size = len(json.dumps(message).encode())
    assert size < 40 * 1024  # far below the 64 KiB frame limit
    assert 0 < len(message["sessions"]) <= boards.SNAPSHOT_SESSIONS
    assert message["stats"]["active"] == boards.MAX_SESSIONS
    assert [s["id"] for s in message["sessions"]] == [e.id for e in full[: len(message["sessions"])]]


def test_a_snapshot_lists_the_highest_risks_first():
    entries = [entry("low", 0.05, "low"), entry("high", 0.7, "high"), entry("mid", 0.3, "moderate")]
    message = boards.snapshot_message("b", entries)
    assert [s["id"] for s in message["sessions"]] == ["high", "mid", "low"]
    assert all(set(s) == {"id", "risk", "band", "percent", "updated_at"} for s in message["sessions"])


async def test_a_failed_first_publication_is_retried_until_it_gets_through(redis_server, monkeypatch):
    store = boards.RedisBoardStore(redis_server.url)
    monkeypatch.setattr(boards, "_store", store)
    redis_server.kill()
    publisher = boards.BoardPublisher("retry", "first")
    try:
        publisher.publish(risk=0.3, band="moderate", percent=30)
        await asyncio.sleep(0.5)  # the first tries fail: nothing listens on the port
        redis_server.start()  # same port

        async def on_board():
            try:
                return [e.id for e in await store.entries("retry")] == ["first"]
            except boards.BOARD_ERRORS:
                return False

        await eventually(on_board, "the failed publication was not retried")
    finally:
        await publisher.close()


async def test_a_memory_board_forgets_empty_boards():
    store = boards.MemoryBoardStore()
    await store.put("gone", entry("one"))
    await store.remove("gone", "one")
    assert store._boards == {}
