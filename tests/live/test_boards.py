"""Board stores: the Redis one against a real redis-server, and the in-memory one."""

import asyncio

import pytest

from live import boards

pytestmark = pytest.mark.redis


@pytest.fixture(params=["memory", "redis"])
def store(request):
    if request.param == "memory":
        return boards.MemoryBoardStore()
    server = request.getfixturevalue("redis_server")
    return boards.RedisBoardStore(server.url)


def entry(sid, risk=0.5, band="moderate"):
    return boards.Entry(id=sid, risk=risk, band=band, updated_at=boards.now_iso())


async def test_put_touch_remove(store):
    assert await store.put("b", entry("one")) is True
    assert await store.put("b", entry("one", 0.6)) is False  # an update, not a new session
    assert [e.risk for e in await store.entries("b")] == [0.6]
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


def test_stats_count_bands():
    assert boards.stats([entry("a", 0.1, "low"), entry("b", 0.9, "high"), entry("c", 0.8, "high")]) == {
        "active": 3,
        "by_band": {"low": 1, "moderate": 0, "high": 2},
    }
