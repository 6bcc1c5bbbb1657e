"""Kiosk boards: which anonymous sessions are shown on a board, shared by every process.

A board holds, per session, only an opaque id, the risk, the band, the whole percent shown beside
it and when it last changed: never a feature value. With ``REDIS_URL`` the state lives in Redis so
a kiosk on any process sees sessions typed on any other; without it, in this process's memory.
Events reach kiosks through the channel layer group of the board. docs/kiosk.md says what a
clinic sees; the rules here are these:

- a session is on a board only while its person shares it (the ``share`` frame), and its tile
  appears ``BOARD_DELAY_S`` after sharing began, so nobody nearby can tell whose it is;
- each process sends a board its sessions' changes at most once per ``BOARD_TICK_S``, in one
  message (``BoardOutbox``): a thousand typists cost a kiosk four messages a second per process,
  not a thousand (docs/kiosk.md, "Kiosks under load");
- a board holds at most ``MAX_SESSIONS`` sessions. When it is full, a newcomer from an address
  that holds fewer places than another address less one takes the oldest place of the address
  holding the most (max-min fairness across processes, in one Lua script): one address can fill
  an empty board but never keep another off it (docs/kiosk.md, "Fair shares of a board");
- an entry refreshed by no process for ``EXPIRY_SECONDS`` is pruned and announced as ended by any
  process that uses the board, every ``PRUNE_SECONDS`` and before every snapshot; every Redis key
  of a board expires ``KEY_TTL_SECONDS`` after the last write to it;
- a snapshot carries at most ``SNAPSHOT_SESSIONS`` sessions (the highest risks), at most
  ``SNAPSHOT_BYTES`` of them, with totals over the whole board in ``stats``;
- a change that fails to reach Redis or the channel layer is retried with exponential backoff
  until it gets through or a newer one replaces it.
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
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from django.conf import settings
from redis.exceptions import RedisError

from project.redis_clients import blocking_async_client

from .layer import group_send_quietly

if TYPE_CHECKING:
    import redis.asyncio
    from redis.commands.core import AsyncScript

logger = logging.getLogger(__name__)

BOARD_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
DEFAULT_BOARD = "lobby"
HEARTBEAT_SECONDS = 5.0
EXPIRY_SECONDS = 20.0  # + one prune period: a dead session is gone within 25 s
PRUNE_SECONDS = 5.0
KEY_TTL_SECONDS = EXPIRY_SECONDS + PRUNE_SECONDS  # refreshed by every write to the board
MAX_SESSIONS = 1000  # per board
SNAPSHOT_SESSIONS = 200  # the highest risks a snapshot lists; stats count them all
SNAPSHOT_BYTES = 32 * 1024  # and at most this much of them: far below the 64 KiB frame limit
MAX_EVENTS = 500  # per outbox message; a larger batch is sent as several
FLUSH_SESSIONS = 500  # store writes per outbox tick; the rest wait for the next tick
FLUSH_CONCURRENCY = 16  # of them at once: the store's pool size
RETRY_FIRST = 0.2  # seconds before the first retry of a failed tick, doubling each time
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
    percent: int  # the whole percent the kiosk shows: always inside the band (live/wording.py)
    updated_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def event(self) -> dict[str, Any]:
        return {"type": "session", **asdict(self)}


class Placed(enum.Enum):
    """What ``put`` did with an entry."""

    NEW = "new"
    UPDATED = "updated"
    FULL = "full"  # the board is full and this owner already holds its fair share: not shown


class Placement(NamedTuple):
    placed: Placed
    evicted: str | None  # the session whose place a fair newcomer took (to announce as ended)


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stats(entries: list[Entry]) -> dict[str, Any]:
    by_band = dict.fromkeys(BANDS, 0)
    for entry in entries:
        by_band[entry.band] = by_band.get(entry.band, 0) + 1
    return {"active": len(entries), "by_band": by_band}


def snapshot_message(board: str, entries: list[Entry]) -> dict[str, Any]:
    """The kiosk's snapshot: the highest risks that fit, and totals over all of ``entries``."""
    shown: list[dict[str, Any]] = []
    size = 0
    for entry in sorted(entries, key=lambda e: (-e.risk, e.id))[:SNAPSHOT_SESSIONS]:
        item = entry.as_dict()
        size += len(json.dumps(item).encode()) + 2
        if size > SNAPSHOT_BYTES:
            break
        shown.append(item)
    return {"type": "snapshot", "board": board, "sessions": shown, "stats": stats(entries)}


class BoardStore(Protocol):
    """Where a board's sessions live: ``MemoryBoardStore`` (one process) or ``RedisBoardStore``
    (every process with the same ``REDIS_URL``). Each call may raise BOARD_ERRORS. ``owner`` is
    the keyed hash of the session's address group (project/addresses.py), never an address."""

    async def put(self, board: str, entry: Entry, owner: str = "") -> Placement: ...

    async def touch(self, board: str, session_id: str) -> bool: ...

    async def remove(self, board: str, session_id: str) -> bool: ...

    async def entries(self, board: str) -> list[Entry]: ...

    async def count(self, board: str) -> int: ...

    async def prune(self, board: str) -> list[str]: ...


@dataclass(slots=True)
class _Place:
    entry: Entry
    owner: str
    joined: float
    seen: float


class MemoryBoardStore:
    """One process's boards (the embedded default, with the in-memory channel layer)."""

    def __init__(self) -> None:
        self._boards: dict[str, dict[str, _Place]] = {}

    async def put(self, board: str, entry: Entry, owner: str = "") -> Placement:
        places = self._boards.setdefault(board, {})
        now = time.monotonic()
        place = places.get(entry.id)
        if place is not None:
            place.entry, place.seen = entry, now
            return Placement(Placed.UPDATED, None)
        evicted = None
        if len(places) >= MAX_SESSIONS:
            held: dict[str, int] = {}
            for other in places.values():
                held[other.owner] = held.get(other.owner, 0) + 1
            top = max(held, key=lambda o: held[o])
            if held[top] <= held.get(owner, 0) + 1:
                return Placement(Placed.FULL, None)
            evicted = min((p for p in places.values() if p.owner == top), key=lambda p: p.joined).entry.id
            del places[evicted]
        places[entry.id] = _Place(entry, owner, now, now)
        return Placement(Placed.NEW, evicted)

    async def touch(self, board: str, session_id: str) -> bool:
        place = self._boards.get(board, {}).get(session_id)
        if place is None:
            return False
        place.seen = time.monotonic()
        return True

    async def remove(self, board: str, session_id: str) -> bool:
        places = self._boards.get(board, {})
        removed = places.pop(session_id, None) is not None
        if not places:
            self._boards.pop(board, None)  # no empty boards kept: their number stays bounded
        return removed

    async def entries(self, board: str) -> list[Entry]:
        return [place.entry for place in self._boards.get(board, {}).values()]

    async def count(self, board: str) -> int:
        return len(self._boards.get(board, {}))

    async def prune(self, board: str) -> list[str]:
        cutoff = time.monotonic() - EXPIRY_SECONDS
        places = self._boards.get(board, {})
        gone = [sid for sid, place in places.items() if place.seen < cutoff]
        for sid in gone:
            del places[sid]
        if not places:
            self._boards.pop(board, None)
        return gone


# Each script runs atomically in Redis: the cap cannot be overshot by two processes at once, a
# place is taken from exactly one session, and of several processes pruning the same board only
# one removes (and so announces) each entry. The keys of a board:
#   KEYS[1] entries  hash  id -> the entry's JSON (what kiosks get)
#   KEYS[2] seen     zset  id -> when its process last refreshed it
#   KEYS[3] owners   hash  id -> "<owner> <joined ms>"
#   KEYS[4] shares   zset  owner -> places held
_DROP = """
local function drop(id)
  local owner = redis.call('HGET', KEYS[3], id)
  redis.call('HDEL', KEYS[1], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  if owner then
    local name = string.match(owner, '^(%S*)')
    if tonumber(redis.call('ZINCRBY', KEYS[4], -1, name)) <= 0 then redis.call('ZREM', KEYS[4], name) end
  end
end
local function keep(ttl)
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
end
"""
# ARGV: id, entry JSON, now (s), cap, ttl (ms), owner, now (ms).
# Returns {1 new | 0 updated | -1 full, the evicted id or ''}.
_PUT = (
    _DROP
    + """
local id, owner = ARGV[1], ARGV[6]
local evicted = ''
if redis.call('HEXISTS', KEYS[1], id) == 0 then
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
    local top = redis.call('ZREVRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    local mine = tonumber(redis.call('ZSCORE', KEYS[4], owner) or '0')
    if #top == 0 or tonumber(top[2]) <= mine + 1 then return {-1, ''} end
    local oldest = nil
    local all = redis.call('HGETALL', KEYS[3])
    for i = 1, #all, 2 do
      local who, joined = string.match(all[i + 1], '^(%S*) (%S+)$')
      if who == top[1] and (oldest == nil or tonumber(joined) < oldest) then
        evicted, oldest = all[i], tonumber(joined)
      end
    end
    if evicted == '' then return {-1, ''} end
    drop(evicted)
  end
  redis.call('HSET', KEYS[3], id, owner .. ' ' .. ARGV[7])
  redis.call('ZINCRBY', KEYS[4], 1, owner)
  redis.call('HSET', KEYS[1], id, ARGV[2])
  redis.call('ZADD', KEYS[2], ARGV[3], id)
  keep(ARGV[5])
  return {1, evicted}
end
redis.call('HSET', KEYS[1], id, ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], id)
keep(ARGV[5])
return {0, ''}
"""
)
# ARGV: id, now (s), ttl (ms)
_TOUCH = (
    _DROP
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
keep(ARGV[3])
return 1
"""
)
# ARGV: id
_REMOVE = (
    _DROP
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
drop(ARGV[1])
return 1
"""
)
# ARGV: cutoff (s), at most this many
_PRUNE = (
    _DROP
    + """
local stale = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(stale) do drop(id) end
return stale
"""
)
_SCRIPTS = {"put": _PUT, "touch": _TOUCH, "remove": _REMOVE, "prune": _PRUNE}


class RedisBoardStore:
    """Boards in Redis, shared by every process with the same ``REDIS_URL``: four keys a board."""

    def __init__(self, url: str) -> None:
        self.url = url
        # redis.asyncio clients belong to one event loop; daphne has one, tests make many.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Client] = weakref.WeakKeyDictionary()

    def _connection(self) -> _Client:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            # A burst waits for one of POOL_SIZE connections. Short timeouts: a dead or frozen
            # Redis must cost a kiosk update, never stall a live socket.
            redis_client = blocking_async_client(
                self.url, size=POOL_SIZE, wait=POOL_TIMEOUT, timeout=STORE_TIMEOUT, health_check_interval=30
            )
            scripts = {name: redis_client.register_script(src) for name, src in _SCRIPTS.items()}
            client = self._clients[loop] = _Client(redis_client, scripts)
        return client

    async def _run(self, script: str, board: str, *args: str | float) -> Any:
        """The reply of one of ``_SCRIPTS`` (Redis replies are untyped: an int or a list here)."""
        return await self._connection().scripts[script](keys=list(self._keys(board)), args=list(args))

    @staticmethod
    def _keys(board: str) -> tuple[str, str, str, str]:
        return tuple(f"board:{board}:{part}" for part in ("entries", "seen", "owners", "shares"))  # type: ignore[return-value]

    @staticmethod
    def _ttl_ms() -> int:
        return int(KEY_TTL_SECONDS * 1000)

    async def put(self, board: str, entry: Entry, owner: str = "") -> Placement:
        now = time.time()
        code, evicted = await self._run(
            "put", board, entry.id, json.dumps(asdict(entry)), now, MAX_SESSIONS, self._ttl_ms(), owner, int(now * 1000)
        )
        placed = {1: Placed.NEW, 0: Placed.UPDATED}.get(int(code), Placed.FULL)
        return Placement(placed, _text(evicted) or None)

    async def touch(self, board: str, session_id: str) -> bool:
        return bool(await self._run("touch", board, session_id, time.time(), self._ttl_ms()))

    async def remove(self, board: str, session_id: str) -> bool:
        return bool(await self._run("remove", board, session_id))

    async def entries(self, board: str) -> list[Entry]:
        raw = await self._connection().redis.hvals(self._keys(board)[0])  # at most MAX_SESSIONS values
        return [Entry(**json.loads(value)) for value in raw]

    async def count(self, board: str) -> int:
        return await self._connection().redis.hlen(self._keys(board)[0])

    async def prune(self, board: str) -> list[str]:
        stale = await self._run("prune", board, time.time() - EXPIRY_SECONDS, MAX_SESSIONS)
        return [_text(raw) for raw in stale]


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


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


async def announce(board: str, events: list[dict[str, Any]]) -> bool:
    """Send ``events`` to the kiosks of ``board`` in as few messages as fit; False when the channel
    layer did not take them all."""
    delivered = True
    for start in range(0, len(events), MAX_EVENTS):
        batch = events[start : start + MAX_EVENTS]
        delivered = await group_send_quietly(group_name(board), {"type": "kiosk.batch", "events": batch}) and delivered
    return delivered


async def prune(board: str) -> None:
    """End the sessions of ``board`` whose process died without a goodbye (raises BOARD_ERRORS)."""
    async with asyncio.timeout(STORE_TIMEOUT):
        gone = await board_store().prune(board)
    if gone:
        await announce(board, [{"type": "session_end", "id": session_id} for session_id in gone])


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

    Outboxes (the live sessions sharing) and kiosks both retain their board, so stale entries go
    whether or not a kiosk is watching, and a process with 500 sessions on a board still prunes
    it once per period.
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


@dataclass(slots=True)
class _Shared:
    """One session's place in an outbox: what the board should show of it, and what it does."""

    owner: str
    visible_at: float  # monotonic time from which its tile may appear (BOARD_DELAY_S)
    latest: Entry | None = None  # what the board should show; None: nothing
    written: Entry | None = None  # what the last write in flight or done was for
    dirty: bool = False  # latest is not on the board yet (or its removal not done)
    shown: bool = False  # the board holds our entry, as far as we know
    closing: bool = False  # the session stopped sharing: remove it, then forget it
    done: asyncio.Event = field(default_factory=asyncio.Event)  # set once a closing session is gone


class BoardOutbox:
    """One board's changes from this process, sent once per tick (docs/kiosk.md, "Kiosks under load").

    Sessions mark what they want shown; a task of the outbox, every ``BOARD_TICK_S`` while anything
    is due, writes the due changes to the board store and sends kiosks one message with all of them
    (and the ends of sessions that fair newcomers displaced). Every ``HEARTBEAT_SECONDS`` it
    refreshes the entries it shows in one round, and tries again for a place for those a full
    board left out. A tick that fails is retried with backoff, the newest state winning.
    """

    def __init__(self, board: str) -> None:
        self.board = board
        self.sessions: dict[str, _Shared] = {}
        self._wake = asyncio.Event()
        self._failures = 0
        self._next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
        janitors.retain(board)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def join(self, session_id: str, *, owner: str, delay: float) -> None:
        self.sessions[session_id] = _Shared(owner=owner, visible_at=time.monotonic() + delay)

    def publish(self, session_id: str, entry: Entry | None) -> None:
        shared = self.sessions.get(session_id)
        if shared is None or shared.closing:
            return
        shared.latest, shared.dirty = entry, True
        self._wake.set()

    async def leave(self, session_id: str) -> None:
        """Take the session off the board (within a tick) and forget it."""
        shared = self.sessions.get(session_id)
        if shared is None:
            return
        shared.closing, shared.latest, shared.dirty = True, None, True
        self._wake.set()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STORE_TIMEOUT + POOL_TIMEOUT):
                await shared.done.wait()
        self.sessions.pop(session_id, None)  # gone, or left to expire with EXPIRY_SECONDS
        if not self.sessions:
            _outboxes.discard(self)

    def close(self) -> None:
        self._task.cancel()
        janitors.release(self.board)

    def _due(self, now: float) -> list[tuple[str, _Shared]]:
        return [(sid, s) for sid, s in self.sessions.items() if s.dirty and (s.closing or s.visible_at <= now)]

    def _next_wait(self, now: float) -> float:
        if self._failures:
            return min(RETRY_MAX, RETRY_FIRST * 2 ** (self._failures - 1)) * random.uniform(0.5, 1.0)
        waits = [self._next_heartbeat - now]
        for shared in self.sessions.values():
            if shared.dirty:
                waits.append(0.0 if shared.closing else shared.visible_at - now)
        return max(0.0, min(waits))

    async def _run(self) -> None:
        tick = float(settings.BOARD_TICK_S)
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._next_wait(time.monotonic())):
                    await self._wake.wait()
            self._wake.clear()
            started = time.monotonic()
            if started >= self._next_heartbeat:
                self._next_heartbeat = started + HEARTBEAT_SECONDS
                await self._attempt(self._heartbeat)
            if self._due(time.monotonic()):
                await self._attempt(self._flush)
            # At most one message per tick: changes arriving meanwhile wait for the next.
            await asyncio.sleep(max(0.0, started + tick - time.monotonic()))

    async def _attempt(self, step: Any) -> None:
        try:
            async with asyncio.timeout(STORE_TIMEOUT + POOL_TIMEOUT):
                await step()
        except BOARD_ERRORS as exc:
            if not self._failures:
                logger.warning("Board %s: publishing failed (%s); will retry.", self.board, type(exc).__name__)
            self._failures += 1
        except Exception:
            logger.exception("Board %s: publishing failed; will retry.", self.board)
            self._failures += 1
        else:
            if self._failures:
                logger.info("Board %s: publishing works again.", self.board)
            self._failures = 0

    async def _flush(self) -> None:
        # At most FLUSH_SESSIONS writes a tick, FLUSH_CONCURRENCY at once (the store's pool size):
        # a thousand typists on one process take a few ticks, never one that outlasts its deadline.
        due = self._due(time.monotonic())[:FLUSH_SESSIONS]
        results = await _gathered(self._write(session_id, shared) for session_id, shared in due)
        events = [event for result in results if not isinstance(result, BaseException) for event in result]
        if events and not await announce(self.board, events):
            raise TimeoutError("the channel layer did not take the board's changes")
        failed = next((result for result in results if isinstance(result, BaseException)), None)
        for (_, shared), result in zip(due, results, strict=True):
            if not isinstance(result, BaseException) and shared.written is shared.latest:
                shared.dirty = False  # nothing newer arrived meanwhile
                if shared.closing:
                    shared.done.set()
        if failed is not None:
            raise failed

    async def _write(self, session_id: str, shared: _Shared) -> list[dict[str, Any]]:
        """Bring the store in line with what ``shared`` wants; the kiosk events that says."""
        store = board_store()
        latest = shared.written = shared.latest
        if latest is None:
            removed = await store.remove(self.board, session_id)
            events = [{"type": "session_end", "id": session_id}] if removed or shared.shown else []
            shared.shown = False
            return events
        placement = await store.put(self.board, latest, shared.owner)
        events = []
        if placement.evicted is not None:
            events.append({"type": "session_end", "id": placement.evicted})
            displaced = self.sessions.get(placement.evicted)
            if displaced is not None:
                displaced.shown = False
        shared.shown = placement.placed is not Placed.FULL
        if shared.shown:
            events.append(latest.event())
        return events

    async def _heartbeat(self) -> None:
        store = board_store()
        refreshing = []
        for session_id, shared in list(self.sessions.items()):
            if shared.closing or shared.latest is None:
                continue
            if shared.shown:
                refreshing.append((session_id, shared))
            else:
                shared.dirty = True  # a full board: try again for a place
        results = await _gathered(store.touch(self.board, session_id) for session_id, _ in refreshing)
        for (_, shared), known in zip(refreshing, results, strict=True):
            if known is False:
                # The board forgot us (Redis restarted, we were pruned or displaced): put it back.
                shared.shown, shared.dirty = False, True
        failed = next((result for result in results if isinstance(result, BaseException)), None)
        if failed is not None:
            raise failed


async def _gathered(calls: Any) -> list[Any]:
    """Run ``calls`` FLUSH_CONCURRENCY at a time; each result, or the exception it raised."""
    gate = asyncio.Semaphore(FLUSH_CONCURRENCY)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(call) for call in calls), return_exceptions=True)


class _Outboxes:
    """One outbox per board and event loop, while any session of this process shares on it."""

    def __init__(self) -> None:
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, BoardOutbox]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, board: str) -> BoardOutbox:
        outboxes = self._by_loop.setdefault(asyncio.get_running_loop(), {})
        outbox = outboxes.get(board)
        if outbox is None:
            outbox = outboxes[board] = BoardOutbox(board)
        return outbox

    def discard(self, outbox: BoardOutbox) -> None:
        outboxes = self._by_loop.get(asyncio.get_running_loop(), {})
        if outboxes.get(outbox.board) is outbox:
            del outboxes[outbox.board]
            outbox.close()


_outboxes = _Outboxes()


class BoardPublisher:
    """One live session's share of a board: what its person chose to show, through the outbox.

    ``publish`` and ``withdraw`` never block and never raise: a board is a side show, and a Redis
    outage must cost the kiosk its updates, not the person their predictions. Nothing reaches the
    board before ``delay`` seconds (``BOARD_DELAY_S``) have passed since the publisher was made;
    then the newest result does, and every newer one within a tick.
    """

    def __init__(self, board: str, session_id: str, *, owner: str = "", delay: float | None = None) -> None:
        self.board = board
        self.session_id = session_id
        self._outbox = _outboxes.get(board)
        self._outbox.join(session_id, owner=owner, delay=settings.BOARD_DELAY_S if delay is None else delay)

    def publish(self, *, risk: float, band: str, percent: int) -> None:
        entry = Entry(id=self.session_id, risk=risk, band=band, percent=percent, updated_at=now_iso())
        self._outbox.publish(self.session_id, entry)

    def withdraw(self) -> None:
        """The person cleared the form: take the tile off the board (sharing stays on)."""
        self._outbox.publish(self.session_id, None)

    async def close(self) -> None:
        """Sharing stopped or the socket closed: the tile goes within a tick."""
        await self._outbox.leave(self.session_id)
