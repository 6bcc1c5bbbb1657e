"""Open WebSockets per client address, per kiosk board and per process: a slot for every socket.

A socket takes its slots at the handshake and gives them back when it ends (docs/kiosk.md, "Open
sockets per address"). ``SocketLimits`` is the ASGI middleware that does it, in front of the
WebSocket routes:

- live sockets (``/ws/predict/`` and any other path): at most ``WEBSOCKET_MAX_PER_ADDRESS`` per
  address group (``project/addresses.py``: an IPv4 address, an IPv6 /64);
- kiosk sockets (``/ws/kiosk/<board>/``): at most ``KIOSKS_PER_ADDRESS`` per address group and
  ``KIOSKS_PER_BOARD`` per board;
- every socket of this process: at most ``WEBSOCKET_MAX_PER_PROCESS`` (by default the open-file
  limit less a reserve for HTTP, the database and Redis), so no mix of addresses can run the
  process out of descriptors.

With ``REDIS_URL`` the per-address and per-board counts are shared by every process: each slot is a
member of a sorted set scored by when it expires, refreshed by its process every
``REFRESH_SECONDS``, so the slots of a process that died without giving them back expire within
``SLOT_TTL_SECONDS``. Each process also counts every socket it holds; when Redis cannot be reached
that count decides (the limit then holds per process, logged once per outage), never no limit. A
refused handshake is denied before any consumer runs (HTTP 403 under daphne) and counted in
``diabetes_websockets_refused_total``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
import secrets
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from redis.exceptions import RedisError

from ml_engine import metrics
from project.addresses import scope_address, source_key
from project.asgi_types import ASGIApp, Receive, Scope, Send
from project.redis_clients import blocking_async_client

if TYPE_CHECKING:
    import redis.asyncio
    from redis.commands.core import AsyncScript

logger = logging.getLogger(__name__)

SLOT_TTL_SECONDS = 90.0
REFRESH_SECONDS = 30.0
STORE_TIMEOUT = 1.0  # a slow Redis costs a handshake at most this, then the local count decides
POOL_SIZE = 8
# Descriptors a process keeps for everything but WebSockets when it sizes its own cap: HTTP
# requests, the database, Redis pools, log and model files.
DESCRIPTOR_RESERVE = 256
KIOSK_PATH = re.compile(r"^/ws/kiosk/(?P<board>[A-Za-z0-9_-]{1,64})/$")
ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)


@dataclass(frozen=True, slots=True)
class Claim:
    """One count a socket must fit in: its Redis key (or memory key), the cap, and its name."""

    key: str
    cap: int
    limit: str  # "address" or "board": the label of the refusal metric


class MemorySlots:
    """One process's counts: the embedded default, and the fallback while Redis is down."""

    def __init__(self) -> None:
        self._members: dict[str, set[str]] = {}

    def take(self, claims: tuple[Claim, ...], member: str) -> Claim | None:
        """Take a slot in every claim, or none: the first claim that is full (None when all fit)."""
        for claim in claims:
            if len(self._members.get(claim.key, ())) >= claim.cap:
                return claim
        self.add(claims, member)
        return None

    def add(self, claims: tuple[Claim, ...], member: str) -> None:
        """Count ``member`` in every claim without checking (it was admitted elsewhere)."""
        for claim in claims:
            self._members.setdefault(claim.key, set()).add(member)

    def give_back(self, claims: tuple[Claim, ...], member: str) -> None:
        for claim in claims:
            members = self._members.get(claim.key)
            if members is not None:
                members.discard(member)
                if not members:
                    del self._members[claim.key]  # no empty sets kept: their number stays bounded


# KEYS: the claims' sorted sets; ARGV: member, now (ms), ttl (ms), then one cap per key. Atomic, so
# two processes cannot both take the last slot. Returns 0 when every slot was taken, else the
# 1-based index of the first full key (nothing taken then).
_TAKE = """
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZSCORE', key, ARGV[1]) == false and redis.call('ZCARD', key) >= tonumber(ARGV[3 + i]) then
    return i
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[1])
  redis.call('PEXPIRE', key, ttl)
end
return 0
"""


class RedisSlots:
    """Counts shared by every process with the same ``REDIS_URL``: one sorted set per claim."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[redis.asyncio.Redis, AsyncScript]] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> tuple[redis.asyncio.Redis, AsyncScript]:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is None:
            # A burst of handshakes waits for a connection (within STORE_TIMEOUT) rather than
            # being taken for an outage.
            client = blocking_async_client(self.url, size=POOL_SIZE, wait=STORE_TIMEOUT, timeout=STORE_TIMEOUT)
            entry = self._clients[loop] = (client, client.register_script(_TAKE))
        return entry

    async def take(self, claims: tuple[Claim, ...], member: str) -> Claim | None:
        """Take a slot in every claim, or none: the first claim that is full (None when all fit)."""
        _, script = self._client()
        now = int(time.time() * 1000)
        args: list[str | int] = [member, now, int(SLOT_TTL_SECONDS * 1000), *(claim.cap for claim in claims)]
        full = int(await script(keys=[claim.key for claim in claims], args=args))
        return claims[full - 1] if full else None

    async def give_back(self, claims: tuple[Claim, ...], member: str) -> None:
        client, _ = self._client()
        pipe = client.pipeline(transaction=False)
        for claim in claims:
            pipe.zrem(claim.key, member)
        await pipe.execute()

    async def refresh(self, held: list[tuple[tuple[Claim, ...], str]]) -> None:
        client, _ = self._client()
        until = int(time.time() * 1000 + SLOT_TTL_SECONDS * 1000)
        pipe = client.pipeline(transaction=False)
        keys = set()
        for claims, member in held:
            for claim in claims:
                pipe.zadd(claim.key, {member: until}, xx=True)  # only slots still held
                keys.add(claim.key)
        for key in keys:
            pipe.pexpire(key, int(SLOT_TTL_SECONDS * 1000))
        await pipe.execute()


def process_cap() -> int:
    """``WEBSOCKET_MAX_PER_PROCESS``, or the open-file limit less ``DESCRIPTOR_RESERVE``."""
    configured = int(settings.WEBSOCKET_MAX_PER_PROCESS or 0)
    if configured > 0:
        return configured
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 65536
    return max(16, int(soft) - DESCRIPTOR_RESERVE)


@dataclass(slots=True)
class _Held:
    claims: tuple[Claim, ...]
    shared: bool  # counted in Redis (True) or only in this process (during an outage)


class SocketSlots:
    """This process's slots: which sockets hold which claims, the process-wide count, the refresher."""

    def __init__(self) -> None:
        self.local = MemorySlots()
        self._shared: RedisSlots | None = None
        self._shared_url = ""
        self._held: dict[str, _Held] = {}
        self._refresher: asyncio.Task[None] | None = None
        self._failing = False
        self._background: set[asyncio.Task[None]] = set()

    @property
    def open(self) -> int:
        return len(self._held)

    def _store(self) -> RedisSlots | None:
        url = settings.REDIS_URL
        if not url:
            return None
        if self._shared is None or self._shared_url != url:
            self._shared, self._shared_url = RedisSlots(url), url
        return self._shared

    async def take(self, claims: tuple[Claim, ...]) -> tuple[str | None, str]:
        """``(member, "")`` when the socket may open; ``(None, limit)`` with the limit that was full."""
        if len(self._held) >= process_cap():
            return None, "process"
        member = secrets.token_hex(8)
        store = self._store()
        if store is not None:
            try:
                async with asyncio.timeout(STORE_TIMEOUT * 2):
                    full = await store.take(claims, member)
            except ERRORS as exc:
                self._outage(exc)
            else:
                self._recovered()
                if full is not None:
                    return None, full.limit
                self.local.add(claims, member)  # counted here too, for an outage to come
                self._keep(member, _Held(claims, shared=True))
                return member, ""
        # No Redis, or Redis down: this process's own count of every socket it holds decides.
        full = self.local.take(claims, member)
        if full is not None:
            return None, full.limit
        self._keep(member, _Held(claims, shared=False))
        return member, ""

    def give_back(self, member: str) -> None:
        """Free the socket's slots now in this process; in Redis on a task of its own, so a socket
        that is being cancelled still gives them back (or they expire with SLOT_TTL_SECONDS)."""
        held = self._held.pop(member, None)
        if held is None:
            return
        self.local.give_back(held.claims, member)
        if not held.shared:
            return
        store = self._store()
        if store is None:
            return
        task = asyncio.get_running_loop().create_task(self._give_back(store, held.claims, member))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _give_back(self, store: RedisSlots, claims: tuple[Claim, ...], member: str) -> None:
        with contextlib.suppress(*ERRORS):
            async with asyncio.timeout(STORE_TIMEOUT * 2):
                await store.give_back(claims, member)

    def _keep(self, member: str, held: _Held) -> None:
        self._held[member] = held
        if held.shared and (self._refresher is None or self._refresher.done()):
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            held = [(h.claims, member) for member, h in self._held.items() if h.shared]
            store = self._store()
            if store is None or not held:
                continue
            try:
                async with asyncio.timeout(STORE_TIMEOUT * 5):
                    await store.refresh(held)
            except ERRORS as exc:
                self._outage(exc)
            else:
                self._recovered()

    def _outage(self, exc: BaseException) -> None:
        if not self._failing:
            logger.warning(
                "Socket limits cannot reach Redis (%s); each process counts its own sockets until it is back.",
                type(exc).__name__,
            )
        self._failing = True

    def _recovered(self) -> None:
        if self._failing:
            logger.info("Socket limits reach Redis again.")
        self._failing = False


slots = SocketSlots()


def claims_for(scope: Scope) -> tuple[str, tuple[Claim, ...]]:
    """The socket kind of ``scope`` and the counts it must fit in."""
    source = source_key(scope_address(scope))
    match = KIOSK_PATH.match(scope.get("path", ""))
    if match:
        return "kiosk", (
            Claim(f"sockets:kiosk:{source}", int(settings.KIOSKS_PER_ADDRESS), "address"),
            Claim(f"sockets:board:{match['board']}", int(settings.KIOSKS_PER_BOARD), "board"),
        )
    return "live", (Claim(f"sockets:live:{source}", int(settings.WEBSOCKET_MAX_PER_ADDRESS), "address"),)


class SocketLimits:
    """ASGI middleware for the WebSocket stack: a socket opens only while its slots are free."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        kind, claims = claims_for(scope)
        member, limit = await slots.take(claims)
        if member is None:
            metrics.WEBSOCKETS_REFUSED.labels(kind, limit).inc()
            return await WebsocketDenier()(scope, receive, send)
        try:
            return await self.app(scope, receive, send)
        finally:
            slots.give_back(member)
