"""The channel layer, used without letting a layer failure reach a person's socket.

The live consumer works without the channel layer; it only uses it to publish to kiosk boards.
When Redis is unreachable, frozen or slow, publishing degrades (logged, rate-limited) and the caller
carries on answering its socket. Every call has a deadline (``SEND_TIMEOUT``) and goes through one
of two lanes, each with at most ``CONCURRENCY`` calls in flight per process: ``publish`` for what
boards send to kiosks, ``kiosk`` for the kiosks' own calls (joining a group, their heartbeats). A
burst of publications waits its turn in its own lane, so it can never hold up a kiosk's snapshot
or heartbeat, and never asks channels-redis's pool for more connections than it holds (redis-py's
default of 100, with one more for the process's receive loop): docs/kiosk.md, "Kiosks under load".
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import TypeVar

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 1.0  # seconds; a hung Redis must not hold up a reply for longer
CONCURRENCY = 32  # layer calls in flight per process and lane: both lanes well below the layer's pool
_LOG_EVERY = 30.0  # seconds between repeated warnings about the same outage
_last_warning = 0.0

# What a channel layer call raises when Redis is down, frozen or full. Anything else is a bug.
LAYER_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError, ChannelFull)

_gates: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
T = TypeVar("T")


LANES = ("publish", "kiosk")


def _gate(lane: str) -> asyncio.Semaphore:
    # asyncio primitives belong to one event loop; daphne has one, tests make many.
    loop = asyncio.get_running_loop()
    gates = _gates.get(loop)
    if gates is None:
        gates = _gates[loop] = {name: asyncio.Semaphore(CONCURRENCY) for name in LANES}
    return gates[lane]


async def bounded(call: Callable[..., Awaitable[T]], *args: object, lane: str = "kiosk") -> T:
    """``await call(*args)`` in turn in ``lane`` and within SEND_TIMEOUT: a channel layer call
    (raises LAYER_ERRORS)."""
    async with asyncio.timeout(SEND_TIMEOUT), _gate(lane):
        return await call(*args)


async def group_send_quietly(group: str, message: dict) -> bool:
    """``channel_layer.group_send`` that never raises: True when the layer took the message."""
    global _last_warning
    channel_layer = get_channel_layer()
    if channel_layer is None:
        return False
    try:
        await bounded(channel_layer.group_send, group, message, lane="publish")
        return True
    except LAYER_ERRORS as exc:
        now = time.monotonic()
        if now - _last_warning >= _LOG_EVERY:
            _last_warning = now
            # The exception's type and text only: the message may carry results, never log it.
            logger.warning("Channel layer unavailable, not published to %s: %s: %s", group, type(exc).__name__, exc)
        return False
    except Exception:
        # A bug, not an outage: its traceback (which never holds the message) goes to the log.
        logger.exception("Publishing to %s failed.", group)
        return False
