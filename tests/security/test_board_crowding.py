"""About 700 sessions on one board: every kiosk still gets a bounded snapshot, and a burst of
publications puts every session's newest result on the board (real daphne and redis-server)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect as aconnect

from live import boards

pytestmark = [pytest.mark.redis, pytest.mark.slow]

CROWD = 700  # past the ~600 that used to push a snapshot over 64 KiB
FRAME_LIMIT = 64 * 1024
WAIT = 60  # seconds: a generous bound for the shared test machine


async def _fill(url: str, board: str, count: int) -> None:
    store = boards.RedisBoardStore(url)
    for i in range(count):
        # What live sessions on another process write: an opaque id, a risk, a band, a time.
        entry = boards.Entry(id=f"crowd{i:04d}", risk=0.5, band="high", percent=50, updated_at=boards.now_iso())
        assert (await store.put(board, entry, owner=f"address{i}")).placed is boards.Placed.NEW


def test_a_crowded_board_gives_every_kiosk_a_bounded_snapshot(redis_server, daphne_with_redis):
    server = daphne_with_redis
    asyncio.run(_fill(redis_server.url, "crowd", CROWD))
    for _ in range(5):
        with server.connect("/ws/kiosk/crowd/", open_timeout=WAIT, max_size=None) as ws:
            raw = ws.recv(timeout=WAIT)
        assert len(raw.encode()) < FRAME_LIMIT // 2
        snapshot = json.loads(raw)
        assert snapshot["type"] == "snapshot" and snapshot["board"] == "crowd"
        assert snapshot["stats"]["active"] == CROWD  # totals count every session
        assert 0 < len(snapshot["sessions"]) <= boards.SNAPSHOT_SESSIONS
        assert all(set(s) == {"id", "risk", "band", "percent", "updated_at"} for s in snapshot["sessions"])
    assert "Traceback" not in server.log(), server.log()[-4000:]


async def test_a_burst_of_publications_puts_every_tile_on_the_board(redis_boards, daphne_with_redis, settings):
    # The publishers run here, as the live sessions of another process would, on the same Redis
    # (the channel layer and the board store), while a kiosk watches on the daphne process.
    # 700 publications at once reach the kiosk in a few batch messages (docs/kiosk.md, "Kiosks
    # under load"), well within the channel's default capacity.
    settings.BOARD_DELAY_S = 0
    server = daphne_with_redis
    async with aconnect(f"{server.ws}/ws/kiosk/burst/", origin=server.http, open_timeout=WAIT, max_size=None) as kiosk:
        assert json.loads(await kiosk.recv())["type"] == "snapshot"
        publishers = [boards.BoardPublisher("burst", f"b{i:04d}") for i in range(CROWD)]
        try:
            for i, publisher in enumerate(publishers):
                publisher.publish(risk=i / 1000, band="low", percent=i // 10)  # all at once
            newest: dict[str, float] = {}
            deadline = time.monotonic() + WAIT
            while len(newest) < CROWD:
                message = json.loads(await asyncio.wait_for(kiosk.recv(), max(0.1, deadline - time.monotonic())))
                if message["type"] == "session":
                    newest[message["id"]] = message["risk"]
            assert newest == {f"b{i:04d}": i / 1000 for i in range(CROWD)}
            entries = await boards.board_store().entries("burst")
            assert len(entries) == CROWD
        finally:
            await asyncio.gather(*(publisher.close() for publisher in publishers))
    assert "Traceback" not in server.log(), server.log()[-4000:]
