"""Kiosk boards: which anonymous sessions are live on a board, shared by every process.

A board holds, per session, only an opaque id, the risk, the band and when it last changed: never a
feature value. With ``REDIS_URL`` the state lives in Redis (a hash of entries plus a sorted set of
last-seen times) so a kiosk on any process sees sessions typed on any other; without it, in this
process's memory. Events reach kiosks through the channel layer group of the board.

Everything here is bounded and heals itself (README: "Kiosk boards"):

- a session refreshes its entry every ``HEARTBEAT_SECONDS``; an entry not refreshed for
  ``EXPIRY_SECONDS`` (its process died without saying goodbye) is pruned and announced as ended by
  any process that uses the board (a kiosk or a live session), every ``PRUNE_SECONDS``, and before
  every snapshot;
- both Redis keys of a board expire ``KEY_TTL_SECONDS`` after the last write to the board, so a
  board whose every process died leaves nothing behind, kiosk or no kiosk;
- a board holds at most ``MAX_SESSIONS`` sessions: past that a new session is not put on the board
  (its person still gets their predictions) and takes a place when one frees up;
- a snapshot carries at most the newest ``SNAPSHOT_SESSIONS`` sessions (and at most
  ``SNAPSHOT_BYTES`` of them), with totals over the whole board in ``stats``;
- a publication that fails is retried with exponential backoff until it gets through;
- Redis connections come from a blocking pool of ``POOL_SIZE``: a burst waits for a connection
  (up to ``POOL_TIMEOUT``) instead of failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import random
import re
import time
import weakref
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from django.conf import settings
from redis.exceptions import RedisError

from .layer import group_send_quietly

if TYPE_CHECKING:
    import redis.asyncio
    from redis.commands.core import AsyncScript

logger = logging.getLogger(__name__)

BOARD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_BOARD = "lobby"
MIN_INTERVAL = 0.2  # at most 5 publications a second per session
HEARTBEAT_SECONDS = 5.0
EXPIRY_SECONDS = 20.0  # + one prune period: a dead session is gone within 25 s
PRUNE_SECONDS = 5.0
KEY_TTL_SECONDS = EXPIRY_SECONDS + PRUNE_SECONDS  # refreshed by every write to the board
MAX_SESSIONS = 1000  # per board; a new session past it waits for a free place
SNAPSHOT_SESSIONS = 200  # the newest sessions a snapshot lists; stats count them all
SNAPSHOT_BYTES = 32 * 1024  # and at most this much of them: far below the 64 KiB frame limit
RETRY_FIRST = 0.2  # seconds before the first retry of a failed publication, doubling each time
RETRY_MAX = HEARTBEAT_SECONDS
STORE_TIMEOUT = 2.0  # seconds one board operation may take before it counts as failed
POOL_SIZE = 16  # Redis connections per process for board state
POOL_TIMEOUT = 2.0  # seconds a board operation waits for a free connection
BANDS = ("low", "moderate", "high")

# What a board operation raises when Redis is down, frozen or saturated. Anything else is a bug
# and is logged with its traceback.
BOARD_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def event(self) -> dict[str, Any]:
        return {"type": "session", **asdict(self)}


class Placed(enum.Enum):
    """What ``put`` did with an entry."""

    NEW = "new"
    UPDATED = "updated"
    FULL = "full"  # the board holds MAX_SESSIONS others: not shown


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stats(entries: list[Entry]) -> dict[str, Any]:
    by_band = dict.fromkeys(BANDS, 0)
    for entry in entries:
        by_band[entry.band] = by_band.get(entry.band, 0) + 1
    return {"active": len(entries), "by_band": by_band}


def snapshot_message(board: str, entries: list[Entry]) -> dict[str, Any]:
    """The kiosk's snapshot: the newest sessions that fit, and totals over all of ``entries``."""
    shown: list[dict[str, Any]] = []
    size = 0
    for entry in sorted(entries, key=lambda e: e.updated_at, reverse=True)[:SNAPSHOT_SESSIONS]:
        item = entry.as_dict()
        size += len(json.dumps(item).encode()) + 2
        if size > SNAPSHOT_BYTES:
            break
        shown.append(item)
    shown.reverse()  # oldest first, as before the cap
    return {"type": "snapshot", "board": board, "sessions": shown, "stats": stats(entries)}


class BoardStore(Protocol):
    """Where a board's sessions live: ``MemoryBoardStore`` (one process) or ``RedisBoardStore``
    (every process with the same ``REDIS_URL``). Each call may raise BOARD_ERRORS."""

    async def put(self, board: str, entry: Entry) -> Placed: ...

    async def touch(self, board: str, session_id: str) -> bool: ...

    async def remove(self, board: str, session_id: str) -> bool: ...

    async def entries(self, board: str) -> list[Entry]: ...

    async def count(self, board: str) -> int: ...

    async def prune(self, board: str) -> list[str]: ...


class MemoryBoardStore:
    """One process's boards (the embedded default, with the in-memory channel layer)."""

    def __init__(self) -> None:
        self._boards: dict[str, dict[str, tuple[Entry, float]]] = {}

    async def put(self, board: str, entry: Entry) -> Placed:
        sessions = self._boards.setdefault(board, {})
        is_new = entry.id not in sessions
        if is_new and len(sessions) >= MAX_SESSIONS:
            return Placed.FULL
        sessions[entry.id] = (entry, time.monotonic())
        return Placed.NEW if is_new else Placed.UPDATED

    async def touch(self, board: str, session_id: str) -> bool:
        sessions = self._boards.get(board, {})
        if session_id not in sessions:
            return False
        sessions[session_id] = (sessions[session_id][0], time.monotonic())
        return True

    async def remove(self, board: str, session_id: str) -> bool:
        sessions = self._boards.get(board, {})
        removed = sessions.pop(session_id, None) is not None
        if not sessions:
            self._boards.pop(board, None)  # no empty boards kept: their number stays bounded
        return removed

    async def entries(self, board: str) -> list[Entry]:
        return sorted((entry for entry, _ in self._boards.get(board, {}).values()), key=lambda e: e.updated_at)

    async def count(self, board: str) -> int:
        return len(self._boards.get(board, {}))

    async def prune(self, board: str) -> list[str]:
        cutoff = time.monotonic() - EXPIRY_SECONDS
        sessions = self._boards.get(board, {})
        gone = [sid for sid, (_, seen) in sessions.items() if seen < cutoff]
        for sid in gone:
            del sessions[sid]
        if not sessions:
            self._boards.pop(board, None)
        return gone


# Each script runs atomically in Redis: the cap cannot be overshot by two processes at once, and
# of several processes pruning the same board only one removes (and so announces) each entry.
_PUT = """
local new = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
if new and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if new then return 1 end
return 0
"""
_TOUCH = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
"""
_PRUNE = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
if #stale > 0 then
  redis.call('ZREM', KEYS[2], unpack(stale))
  redis.call('HDEL', KEYS[1], unpack(stale))
end
return stale
"""


class RedisBoardStore:
    """Boards in Redis, shared by every process with the same ``REDIS_URL``."""

    def __init__(self, url: str) -> None:
        self.url = url
        # redis.asyncio clients belong to one event loop; daphne has one, tests make many.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Client] = weakref.WeakKeyDictionary()

    def _connection(self) -> _Client:
        import redis.asyncio as redis

        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # A blocking pool: a burst of publications queues for one of POOL_SIZE connections
            # instead of failing with MaxConnectionsError. Short timeouts: a dead or frozen Redis
            # must cost a kiosk update, never stall a live socket.
            pool = redis.BlockingConnectionPool.from_url(
                self.url,
                max_connections=POOL_SIZE,
                timeout=POOL_TIMEOUT,
                socket_connect_timeout=1,
                socket_timeout=STORE_TIMEOUT,
                health_check_interval=30,
            )
            redis_client = redis.Redis(connection_pool=pool)
            scripts = {name: redis_client.register_script(src) for name, src in _SCRIPTS.items()}
            client = self._clients[loop] = _Client(redis_client, scripts)
        return client

    def _client(self) -> redis.asyncio.Redis:
        return self._connection().redis

    async def _run(self, script: str, board: str, *args: str | float) -> Any:
        """The reply of one of ``_SCRIPTS`` (Redis replies are untyped: an int or a list here)."""
        return await self._connection().scripts[script](keys=list(self._keys(board)), args=list(args))

    @staticmethod
    def _keys(board: str) -> tuple[str, str]:
        return f"board:{board}:entries", f"board:{board}:seen"

    @staticmethod
    def _ttl_ms() -> int:
        return int(KEY_TTL_SECONDS * 1000)

    async def put(self, board: str, entry: Entry) -> Placed:
        placed = await self._run(
            "put", board, entry.id, json.dumps(asdict(entry)), time.time(), MAX_SESSIONS, self._ttl_ms()
        )
        return {1: Placed.NEW, 0: Placed.UPDATED}.get(placed, Placed.FULL)

    async def touch(self, board: str, session_id: str) -> bool:
        return bool(await self._run("touch", board, session_id, time.time(), self._ttl_ms()))

    async def remove(self, board: str, session_id: str) -> bool:
        entries, seen = self._keys(board)
        pipe = self._client().pipeline(transaction=True)
        pipe.hdel(entries, session_id)
        pipe.zrem(seen, session_id)
        removed, _ = await pipe.execute()
        return bool(removed)

    async def entries(self, board: str) -> list[Entry]:
        entries, _ = self._keys(board)
        raw = await self._client().hvals(entries)  # at most MAX_SESSIONS values
        parsed = [Entry(**json.loads(value)) for value in raw]
        return sorted(parsed, key=lambda e: e.updated_at)

    async def count(self, board: str) -> int:
        entries, _ = self._keys(board)
        return await self._client().hlen(entries)

    async def prune(self, board: str) -> list[str]:
        stale = await self._run("prune", board, time.time() - EXPIRY_SECONDS, MAX_SESSIONS)
        return [raw.decode() if isinstance(raw, bytes) else raw for raw in stale]


_SCRIPTS = {"put": _PUT, "touch": _TOUCH, "prune": _PRUNE}


@dataclass(frozen=True, slots=True)
class _Client:
    """One event loop's Redis client for boards, with the board scripts registered on it."""

    redis: redis.asyncio.Redis
    scripts: dict[str, AsyncScript]


_store: BoardStore | None = None


def board_store() -> BoardStore:
    global _store
    if _store is None:
        _store = RedisBoardStore(settings.REDIS_URL) if settings.REDIS_URL else MemoryBoardStore()
    return _store


async def announce(board: str, event: dict[str, Any]) -> bool:
    """Send ``event`` to the kiosks of ``board``; False when the channel layer did not take it."""
    return await group_send_quietly(group_name(board), {"type": "kiosk.event", "event": event})


async def prune(board: str) -> None:
    """End the sessions of ``board`` whose process died without a goodbye (raises BOARD_ERRORS)."""
    async with asyncio.timeout(STORE_TIMEOUT):
        gone = await board_store().prune(board)
    for session_id in gone:
        await announce(board, {"type": "session_end", "id": session_id})


async def snapshot(board: str) -> dict[str, Any]:
    """A fresh snapshot of ``board``: stale entries pruned first (raises BOARD_ERRORS)."""
    await prune(board)
    async with asyncio.timeout(STORE_TIMEOUT):
        entries = await board_store().entries(board)
    return snapshot_message(board, entries)


async def prune_forever(board: str) -> None:
    """Prune ``board`` every PRUNE_SECONDS, logging an outage once rather than every time."""
    failing = False
    while True:
        await asyncio.sleep(PRUNE_SECONDS)
        try:
            await prune(board)
        except BOARD_ERRORS as exc:
            if not failing:
                logger.warning("Board %s: pruning failed (%s); will retry.", board, type(exc).__name__)
            failing = True
        except Exception:
            logger.exception("Board %s: pruning failed; will retry.", board)
        else:
            failing = False


class _Janitors:
    """One pruning task per board and event loop, while anything in this process uses the board.

    Live sessions and kiosks both retain their board, so stale entries go whether or not a kiosk
    is watching, and a process with 500 sessions on a board still prunes it once per period.
    """

    def __init__(self) -> None:
        # Per event loop: board name -> (its pruning task, how many users retain it).
        self._by_loop: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, tuple[asyncio.Task[None], int]]
        ] = weakref.WeakKeyDictionary()

    def retain(self, board: str) -> None:
        loop = asyncio.get_running_loop()
        boards = self._by_loop.setdefault(loop, {})
        task, users = boards.get(board, (None, 0))
        if task is None or task.done():
            task = loop.create_task(prune_forever(board))
        boards[board] = (task, users + 1)

    def release(self, board: str) -> None:
        boards = self._by_loop.get(asyncio.get_running_loop(), {})
        if board not in boards:
            return
        task, users = boards[board]
        if users > 1:
            boards[board] = (task, users - 1)
        else:
            task.cancel()
            del boards[board]

    def watched(self) -> set[str]:
        return set(self._by_loop.get(asyncio.get_running_loop(), {}))


janitors = _Janitors()


class BoardPublisher:
    """Publishes one live session's results to its board, at most 5 a second.

    ``publish`` never blocks the caller and never raises: a board is a side show, and a Redis
    outage must cost the kiosk its updates, not the person their predictions. The newest result
    always gets through: a result arriving inside the 200 ms window is sent when it closes, and a
    publication that fails (Redis down, pool exhausted, layer full) is retried with exponential
    backoff from RETRY_FIRST up to RETRY_MAX until it succeeds or a newer one replaces it.
    """

    def __init__(self, board: str, session_id: str) -> None:
        self.board = board
        self.session_id = session_id
        self._latest: Entry | None = None  # what the board should show; None: nothing
        self._dirty = False  # _latest is not on the board yet (or its removal not announced)
        self._shown = False  # the board holds our entry, as far as we know
        self._end_owed = False  # removed, but the session_end did not reach the layer yet
        self._failures = 0
        self._last_sent = 0.0
        self._wake = asyncio.Event()
        self._closed = False
        janitors.retain(board)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def publish(self, *, risk: float, band: str) -> None:
        self._latest = Entry(id=self.session_id, risk=risk, band=band, updated_at=now_iso())
        self._dirty = True
        self._wake.set()

    def withdraw(self) -> None:
        """The person cleared the form: take the tile off the board."""
        self._latest = None
        self._dirty = True
        self._wake.set()

    def _next_wait(self) -> float:
        if self._dirty and self._failures:
            backoff = min(RETRY_MAX, RETRY_FIRST * 2 ** (self._failures - 1))
            return backoff * random.uniform(0.5, 1.0)  # jitter: a burst's retries spread out
        return HEARTBEAT_SECONDS  # a refresh, or another try for a place on a full board

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_wait())
            self._wake.clear()
            wait = self._last_sent + MIN_INTERVAL - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last_sent = time.monotonic()
            await self._step()

    async def _step(self) -> None:
        try:
            async with asyncio.timeout(STORE_TIMEOUT + POOL_TIMEOUT):
                done = await self._sync() if self._dirty else await self._refresh()
        except BOARD_ERRORS as exc:
            done = False
            if not self._failures:
                logger.warning("Board %s: publishing failed (%s); will retry.", self.board, type(exc).__name__)
        except Exception:
            done = False
            logger.exception("Board %s: publishing failed; will retry.", self.board)
        if done:
            if self._failures:
                logger.info("Board %s: publishing works again.", self.board)
            self._failures = 0
        else:
            self._failures += 1

    async def _refresh(self) -> bool:
        if not self._shown:
            return True
        if not await board_store().touch(self.board, self.session_id):
            # The board forgot us (Redis restarted, or we were pruned): put the tile back.
            self._shown = False
            self._dirty = True
            return await self._sync()
        return True

    async def _sync(self) -> bool:
        """Bring the board in line with ``_latest``; False when it has to be tried again."""
        latest = self._latest
        if latest is None:
            if self._shown:
                self._end_owed = await board_store().remove(self.board, self.session_id) or self._end_owed
                self._shown = False
            if self._end_owed:
                if not await announce(self.board, {"type": "session_end", "id": self.session_id}):
                    return False
                self._end_owed = False
        else:
            placed = await board_store().put(self.board, latest)
            if placed is Placed.FULL:
                # The board is full: not shown for now; tried again at the next heartbeat.
                self._shown = False
                return True
            self._shown = True
            self._end_owed = False
            if not await announce(self.board, latest.event()):
                return False
        if self._latest is latest:  # nothing newer arrived meanwhile
            self._dirty = False
        return True

    async def close(self) -> None:
        """The socket closed: end the session on the board."""
        self._closed = True
        self._task.cancel()
        try:
            async with asyncio.timeout(STORE_TIMEOUT + POOL_TIMEOUT):
                if await board_store().remove(self.board, self.session_id) or self._end_owed:
                    await announce(self.board, {"type": "session_end", "id": self.session_id})
        except BOARD_ERRORS as exc:
            logger.warning(
                "Board %s: could not end a session (%s); it expires in %.0f s.",
                self.board,
                type(exc).__name__,
                EXPIRY_SECONDS,
            )
        finally:
            janitors.release(self.board)
