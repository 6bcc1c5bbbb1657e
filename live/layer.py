"""Sending on the channel layer without letting a layer failure reach a person's socket.

The live consumer works without the channel layer; it only uses it to publish to kiosk boards.
When Redis is unreachable or slow, publishing degrades (logged, rate-limited) and the caller
carries on answering its socket.
"""

from __future__ import annotations

import asyncio
import logging
import time

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

SEND_TIMEOUT = 1.0  # seconds; a hung Redis must not hold up a reply for longer
_LOG_EVERY = 30.0  # seconds between repeated warnings about the same outage
_last_warning = 0.0


async def group_send_quietly(group: str, message: dict) -> bool:
    """``channel_layer.group_send`` that never raises: True when the layer took the message."""
    global _last_warning
    try:
        layer = get_channel_layer()
        if layer is None:
            return False
        async with asyncio.timeout(SEND_TIMEOUT):
            await layer.group_send(group, message)
        return True
    except Exception as exc:
        now = time.monotonic()
        if now - _last_warning >= _LOG_EVERY:
            _last_warning = now
            # The exception's type and text only: the message may carry results, never log it.
            logger.warning("Channel layer unavailable, not published to %s: %s: %s", group, type(exc).__name__, exc)
        return False
