"""Kiosk boards: which anonymous sessions are live on a board, shared by every process.

A board holds, per session, only an opaque id, the risk, the band and when it last changed: never a
feature value. With ``REDIS_URL`` the state lives in Redis (a hash of entries plus a sorted set of
last-seen times) so a kiosk on any process sees sessions typed on any other; without it, in this
process's memory. Events reach kiosks through the channel layer group of the board.

A session refreshes its entry every ``HEARTBEAT_SECONDS``; an entry not refreshed for
``EXPIRY_SECONDS`` (its process died without saying goodbye) is pruned by the kiosks, which
announce it as ended.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import weakref
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from django.conf import settings

from .layer import group_send_quietly

logger = logging.getLogger(__name__)

BOARD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_BOARD = "lobby"
MIN_INTERVAL = 0.2  # at most 5 publications a second per session
HEARTBEAT_SECONDS = 5.0
EXPIRY_SECONDS = 20.0  # + one prune period: a dead session is gone within 25 s
PRUNE_SECONDS = 5.0
BANDS = ("low", "moderate", "high")


def valid_board(name: str) -> bool:
    return bool(BOARD_NAME.fullmatch(name))


def group_name(board: str) -> str:
    return f"kiosk.{board}"


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    risk: float
    band: str
    updated_at: str

    def as_dict(self) -> dict:
        return asdict(self)

    def event(self) -> dict:
        return {"type": "session", **asdict(self)}


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stats(entries: list[Entry]) -> dict:
    by_band = dict.fromkeys(BANDS, 0)
    for entry in entries:
        by_band[entry.band] = by_band.get(entry.band, 0) + 1
    return {"active": len(entries), "by_band": by_band}


class MemoryBoardStore:
    """One process's boards (the embedded default, with the in-memory channel layer)."""

    def __init__(self) -> None:
        self._boards: dict[str, dict[str, tuple[Entry, float]]] = {}

    async def put(self, board: str, entry: Entry) -> bool:
        sessions = self._boards.setdefault(board, {})
        is_new = entry.id not in sessions
        sessions[entry.id] = (entry, time.monotonic())
        return is_new

    async def touch(self, board: str, session_id: str) -> bool:
        sessions = self._boards.get(board, {})
        if session_id not in sessions:
            return False
        sessions[session_id] = (sessions[session_id][0], time.monotonic())
        return True

    async def remove(self, board: str, session_id: str) -> bool:
        return self._boards.get(board, {}).pop(session_id, None) is not None

    async def entries(self, board: str) -> list[Entry]:
        return sorted((entry for entry, _ in self._boards.get(board, {}).values()), key=lambda e: e.updated_at)

    async def prune(self, board: str) -> list[str]:
        cutoff = time.monotonic() - EXPIRY_SECONDS
        sessions = self._boards.get(board, {})
        gone = [sid for sid, (_, seen) in sessions.items() if seen < cutoff]
        for sid in gone:
            del sessions[sid]
        return gone


class RedisBoardStore:
    """Boards in Redis, shared by every process with the same ``REDIS_URL``."""

    def __init__(self, url: str) -> None:
        self.url = url
        # redis.asyncio clients belong to one event loop; daphne has one, tests make many.
        self._clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def _client(self):
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # Short timeouts: a dead Redis must cost a kiosk update, never stall a live socket.
            client = redis.Redis.from_url(
                self.url, socket_connect_timeout=1, socket_timeout=2, health_check_interval=30
            )
            self._clients[loop] = client
        return client

    @staticmethod
    def _keys(board: str) -> tuple[str, str]:
        return f"board:{board}:entries", f"board:{board}:seen"

    async def put(self, board: str, entry: Entry) -> bool:
        entries, seen = self._keys(board)
        pipe = self._client().pipeline(transaction=True)
        pipe.hset(entries, entry.id, json.dumps(asdict(entry)))
        pipe.zadd(seen, {entry.id: time.time()})
        added, _ = await pipe.execute()
        return bool(added)

    async def touch(self, board: str, session_id: str) -> bool:
        entries, seen = self._keys(board)
        client = self._client()
        if not await client.hexists(entries, session_id):
            return False
        await client.zadd(seen, {session_id: time.time()})
        return True

    async def remove(self, board: str, session_id: str) -> bool:
        entries, seen = self._keys(board)
        pipe = self._client().pipeline(transaction=True)
        pipe.hdel(entries, session_id)
        pipe.zrem(seen, session_id)
        removed, _ = await pipe.execute()
        return bool(removed)

    async def entries(self, board: str) -> list[Entry]:
        entries, _ = self._keys(board)
        raw = await self._client().hgetall(entries)
        parsed = [Entry(**json.loads(value)) for value in raw.values()]
        return sorted(parsed, key=lambda e: e.updated_at)

    async def prune(self, board: str) -> list[str]:
        entries, seen = self._keys(board)
        client = self._client()
        stale = await client.zrangebyscore(seen, "-inf", time.time() - EXPIRY_SECONDS)
        gone = []
        for raw_id in stale:
            # Several kiosks prune at once; only the one whose ZREM removed the id announces it.
            if await client.zrem(seen, raw_id):
                await client.hdel(entries, raw_id)
                gone.append(raw_id.decode() if isinstance(raw_id, bytes) else raw_id)
        return gone


_store: MemoryBoardStore | RedisBoardStore | None = None


def board_store() -> MemoryBoardStore | RedisBoardStore:
    global _store
    if _store is None:
        _store = RedisBoardStore(settings.REDIS_URL) if settings.REDIS_URL else MemoryBoardStore()
    return _store


async def prune_forever(board: str) -> None:
    """End, every PRUNE_SECONDS, the sessions of ``board`` whose process died without a goodbye."""
    while True:
        await asyncio.sleep(PRUNE_SECONDS)
        try:
            for session_id in await board_store().prune(board):
                await announce(board, {"type": "session_end", "id": session_id})
        except Exception as exc:
            logger.warning("Board %s: pruning failed (%s); will retry.", board, type(exc).__name__)


async def announce(board: str, event: dict) -> None:
    await group_send_quietly(group_name(board), {"type": "kiosk.event", "event": event})


class BoardPublisher:
    """Publishes one live session's results to its board, at most 5 a second.

    ``publish`` never blocks the caller and never raises: a board is a side show, and a Redis
    outage must cost the kiosk its updates, not the person their predictions. The newest result
    always gets through: a result arriving inside the 200 ms window is sent when it closes.
    """

    def __init__(self, board: str, session_id: str) -> None:
        self.board = board
        self.session_id = session_id
        self._latest: Entry | None = None
        self._sent: Entry | None = None
        self._last_sent = 0.0
        self._wake = asyncio.Event()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run())
        self._failing = False

    def publish(self, *, risk: float, band: str) -> None:
        self._latest = Entry(id=self.session_id, risk=risk, band=band, updated_at=now_iso())
        self._wake.set()

    def withdraw(self) -> None:
        """The person cleared the form: take the tile off the board."""
        self._latest = None
        self._wake.set()

    async def _run(self) -> None:
        while not self._closed:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=HEARTBEAT_SECONDS)
            except TimeoutError:
                await self._guarded(self._heartbeat)
                continue
            self._wake.clear()
            wait = self._last_sent + MIN_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_sent = time.monotonic()
            await self._guarded(self._send_latest)

    async def _send_latest(self) -> None:
        latest = self._latest
        if latest is None:
            if self._sent is not None:
                self._sent = None
                if await board_store().remove(self.board, self.session_id):
                    await announce(self.board, {"type": "session_end", "id": self.session_id})
            return
        await board_store().put(self.board, latest)
        self._sent = latest
        await announce(self.board, latest.event())

    async def _heartbeat(self) -> None:
        if self._sent is None:
            return
        if not await board_store().touch(self.board, self.session_id):
            # The board forgot us (Redis restarted, or we were pruned): put the tile back.
            await self._send_latest()

    async def _guarded(self, step) -> None:
        try:
            await step()
        except Exception as exc:  # Redis down, layer full...: degrade, never break the live socket
            if not self._failing:
                logger.warning("Board %s: publishing failed (%s); will retry.", self.board, type(exc).__name__)
            self._failing = True
        else:
            if self._failing:
                logger.info("Board %s: publishing works again.", self.board)
            self._failing = False

    async def close(self) -> None:
        """The socket closed: end the session on the board."""
        self._closed = True
        self._task.cancel()
        try:
            if await board_store().remove(self.board, self.session_id):
                await announce(self.board, {"type": "session_end", "id": self.session_id})
        except Exception as exc:
            logger.warning(
                "Board %s: could not end a session (%s); it expires in %.0f s.",
                self.board,
                type(exc).__name__,
                EXPIRY_SECONDS,
            )
