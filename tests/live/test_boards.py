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
    return boards.Entry(id=sid, risk=risk, band=band, updated_at=updated_at or boards.now_iso())


async def eventually(check, what: str):
    deadline = time.monotonic() + WAIT
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def test_put_touch_remove(store):
    assert await store.put("b", entry("one")) is boards.Placed.NEW
    assert await store.put("b", entry("one", 0.6)) is boards.Placed.UPDATED
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


async def test_a_full_board_keeps_its_sessions_and_refuses_new_ones(store, monkeypatch):
    monkeypatch.setattr(boards, "MAX_SESSIONS", 3)
    for sid in ("a", "b", "c"):
        assert await store.put("full", entry(sid)) is boards.Placed.NEW
    assert await store.put("full", entry("d")) is boards.Placed.FULL
    assert await store.put("full", entry("a", 0.9, "high")) is boards.Placed.UPDATED  # members still update
    assert await store.touch("full", "d") is False
    assert sorted(e.id for e in await store.entries("full")) == ["a", "b", "c"]
    await store.remove("full", "b")
    assert await store.put("full", entry("d")) is boards.Placed.NEW  # a freed place is taken


async def test_every_board_key_has_a_ttl_refreshed_by_activity(redis_server, monkeypatch):
    import redis.asyncio as redis

    store = boards.RedisBoardStore(redis_server.url)
    client = redis.Redis.from_url(redis_server.url)
    try:
        await store.put("ttl", entry("one"))
        keys = sorted(k.decode() for k in await client.keys("board:ttl:*"))
        assert keys == ["board:ttl:entries", "board:ttl:seen"]
        for key in keys:
            assert 0 < await client.pttl(key) <= boards.KEY_TTL_SECONDS * 1000
        await client.pexpire("board:ttl:seen", 50_000)
        await client.pexpire("board:ttl:entries", 50_000)
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
    newest = sorted(full, key=lambda e: e.updated_at)[-len(message["sessions"]) :]
    assert [s["id"] for s in message["sessions"]] == [e.id for e in newest]  # the newest, oldest first


async def test_a_failed_first_publication_is_retried_until_it_gets_through(redis_server, monkeypatch):
    store = boards.RedisBoardStore(redis_server.url)
    monkeypatch.setattr(boards, "_store", store)
    redis_server.kill()
    publisher = boards.BoardPublisher("retry", "first")
    try:
        publisher.publish(risk=0.3, band="moderate")
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
