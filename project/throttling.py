"""Rate limits per client address, shared by every process through Redis when ``REDIS_URL`` is set.

README: "Throttles". Each limit is a fixed window per address that opens with the address's first
request: ``rate`` is ``"<count>/<second|minute|hour|day>"`` and a request of ``cost`` units (a batch
of 1000 rows costs 1000) is allowed while the window's total stays within ``count``; a refused
request costs nothing. With Redis the check-and-add is one Lua script (atomic across processes) on
one key per address that expires when its window ends; without Redis each process counts in a
bounded dictionary.

Redis connections come from a blocking pool: a client's own burst of concurrent requests waits up
to ``POOL_TIMEOUT`` for a connection instead of failing, so concurrency is never mistaken for an
outage. Only when Redis really cannot be reached does each process fall back to counting by itself
in memory (logged at most once a minute): a throttle must neither turn a Redis outage into a total
one nor let an outage lift every limit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from redis.exceptions import RedisError

from .asgi_types import ASGIApp, Receive, Scope, Send
from .redis_clients import blocking_async_client, blocking_client

if TYPE_CHECKING:
    import redis
    import redis.asyncio

logger = logging.getLogger(__name__)

PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "day": 86400}
KEY_PREFIX = "throttle"
MAX_ADDRESS_LENGTH = 64  # an address longer than this is cut (keys stay small)
MEMORY_MAX_KEYS = 100_000  # per process, without Redis: the oldest windows are dropped past this
OUTAGE_LOG_INTERVAL = 60.0
POOL_SIZE = 32  # Redis connections per process (and per event loop) for throttles
POOL_TIMEOUT = 2.0  # seconds a throttle check waits for a free connection

# KEYS[1]: the address's counter; ARGV: cost, limit, window in ms. The window starts with the
# first request (the key's expiry), so it is not shared by every client on the clock's minute.
# Returns {total or -1 when the cost does not fit (nothing added then), ms left in the window}.
_LUA = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost = tonumber(ARGV[1])
if used + cost > tonumber(ARGV[2]) then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]); left = tonumber(ARGV[3]) end
  return {-1, left}
end
local total = redis.call('INCRBY', KEYS[1], cost)
local left = redis.call('PTTL', KEYS[1])
if left < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3]); left = tonumber(ARGV[3]) end
return {total, left}
"""


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"600/minute"`` → ``(600, 60)``; empty or ``None`` → ``None`` (no limit)."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    seconds = PERIODS.get(period.strip().lower())
    if not count.strip().isdigit() or seconds is None:
        raise ValueError(f"A rate looks like 600/minute (second, minute, hour or day); got {rate!r}.")
    return int(count), seconds


@dataclass(frozen=True)
class Decision:
    allowed: bool
    wait: float  # seconds until the window ends (when refused)


class Throttle:
    """One named limit. ``hit(address, cost)`` (sync code) or ``await ahit(...)`` (async code)."""

    def __init__(self, scope: str, rate: Callable[[], str | None]):
        self.scope = scope
        self._rate = rate  # read on every hit, so a settings change takes effect at once

    @property
    def rate(self) -> tuple[int, int] | None:
        return parse_rate(self._rate())

    def _key(self, address: str) -> str:
        return f"{KEY_PREFIX}:{self.scope}:{address[:MAX_ADDRESS_LENGTH]}"

    def _plan(self, address: str, cost: int, redis_client: Callable[[], Any]) -> Decision | tuple[Any, tuple]:
        """The decision when Redis need not be asked (no limit, a cost over the limit, or no Redis:
        this process counts), else the Redis client and the arguments of the script's ``eval``."""
        rate = self.rate
        if rate is None:
            return Decision(True, 0.0)
        limit, window = rate
        if cost > limit:
            return Decision(False, float(window))
        key = self._key(address)
        client = redis_client()
        if client is None:
            return _memory.hit(key, cost, limit, window)
        return client, (_LUA, 1, key, cost, limit, window * 1000)

    def hit(self, address: str, cost: int = 1) -> Decision:
        plan = self._plan(address, cost, _sync_redis)
        if isinstance(plan, Decision):
            return plan
        client, script = plan
        try:
            reply = client.eval(*script)
        except (RedisError, OSError) as exc:
            return _outage(exc, script)
        return _decision(reply)

    async def ahit(self, address: str, cost: int = 1) -> Decision:
        plan = self._plan(address, cost, _async_redis)
        if isinstance(plan, Decision):
            return plan
        client, script = plan
        try:
            reply = await client.eval(*script)
        except (RedisError, OSError) as exc:
            return _outage(exc, script)
        return _decision(reply)


def _decision(reply: list[int]) -> Decision:
    """The Lua script's ``{total or -1, ms left}`` as a Decision."""
    total, left_ms = reply
    return Decision(total != -1, left_ms / 1000)


class _MemoryCounts:
    """Per-process counters for when there is no Redis; at most MEMORY_MAX_KEYS windows."""

    def __init__(self) -> None:
        self._counts: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def hit(self, key: str, cost: int, limit: int, window: int) -> Decision:
        now = time.monotonic()
        with self._lock:
            used, expires = self._counts.get(key, (0, now + window))
            if expires <= now:
                used, expires = 0, now + window
            if used + cost > limit:
                return Decision(False, expires - now)
            self._counts[key] = (used + cost, expires)
            self._counts.move_to_end(key)
            while len(self._counts) > MEMORY_MAX_KEYS:
                self._counts.popitem(last=False)
            # Drop a few expired windows on each hit, so idle addresses do not linger.
            for _ in range(2):
                oldest = next(iter(self._counts))
                if self._counts[oldest][1] > now:
                    break
                del self._counts[oldest]
        return Decision(True, 0.0)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


_memory = _MemoryCounts()
_sync_client: redis.Redis | None = None
_sync_url: str | None = None
_async_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[str, redis.asyncio.Redis]] = (
    weakref.WeakKeyDictionary()
)
_last_outage_log = 0.0


def _sync_redis() -> redis.Redis | None:
    global _sync_client, _sync_url
    url = settings.REDIS_URL
    if not url:
        return None
    if _sync_client is None or _sync_url != url:
        _sync_client = blocking_client(url, size=POOL_SIZE, wait=POOL_TIMEOUT, timeout=1.0)
        _sync_url = url
    return _sync_client


def _async_redis() -> redis.asyncio.Redis | None:
    """An asyncio Redis client for the running event loop (clients cannot cross loops)."""
    url = settings.REDIS_URL
    if not url:
        return None
    loop = asyncio.get_running_loop()
    entry = _async_clients.get(loop)
    if entry is None or entry[0] != url:
        client = blocking_async_client(url, size=POOL_SIZE, wait=POOL_TIMEOUT, timeout=1.0)
        entry = (url, client)
        _async_clients[loop] = entry
    return entry[1]


def _outage(exc: Exception, script: tuple) -> Decision:
    """Redis is down: this process counts the request by itself until it is back (a throttle must
    neither turn a Redis outage into a total one nor lift its limit), logged at most once a minute."""
    global _last_outage_log
    now = time.monotonic()
    if now - _last_outage_log >= OUTAGE_LOG_INTERVAL:
        _last_outage_log = now
        logger.warning("Throttles cannot reach Redis (%s); each process counts by itself until it is back.", exc)
    _, _, key, cost, limit, window_ms = script
    return _memory.hit(key, cost, limit, window_ms // 1000)


def reset() -> None:
    """Forget the in-process counts (tests)."""
    _memory.clear()


# The limits (README: "Throttles"): the rate is read from settings on every hit.
# REST rows keep DRF's setting (REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]["anon"]).
def _rest_rate() -> str | None:
    rates = settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES")
    return rates.get("anon") if isinstance(rates, dict) else None


rest_rows = Throttle("rest", _rest_rate)
v2_rows = Throttle("v2", lambda: settings.THROTTLE_V2_ROWS)
form_posts = Throttle("form", lambda: settings.THROTTLE_FORM_POSTS)
websocket_connects = Throttle("ws", lambda: settings.THROTTLE_WEBSOCKET_CONNECTS)


class WebSocketConnectThrottle:
    """ASGI middleware for the WebSocket stack: handshakes per client address
    (``WEBSOCKET_THROTTLE_CONNECT``); one over the limit is denied (HTTP 403) before any consumer runs."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            client = scope.get("client") or ("", 0)
            decision = await websocket_connects.ahit(str(client[0]))
            if not decision.allowed:
                from channels.security.websocket import WebsocketDenier

                from ml_engine import metrics

                kind = "kiosk" if str(scope.get("path", "")).startswith("/ws/kiosk/") else "live"
                metrics.WEBSOCKETS_REFUSED.labels(kind, "handshakes").inc()
                return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)
