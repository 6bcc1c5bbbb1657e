"""WebSocket consumers: one class per socket kind."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from ml_engine.metrics import OPEN_WEBSOCKETS

from .boards import PRUNE_SECONDS, announce, board_store, group_name, stats

logger = logging.getLogger(__name__)


class KioskConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/kiosk/<board>/``: a snapshot of the board, then its sessions' events (read-only)."""

    async def connect(self):
        self.board = self.scope["url_route"]["kwargs"]["board"]
        self.group = group_name(self.board)
        self._pruner = None
        # Join the group before reading the snapshot, so no event falls between the two.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        OPEN_WEBSOCKETS.labels("kiosk").inc()
        self._counted = True
        try:
            entries = await board_store().entries(self.board)
        except Exception as exc:
            # No board state (Redis down): close so the kiosk reconnects and rebuilds later.
            logger.warning("Board %s: snapshot failed (%s).", self.board, type(exc).__name__)
            await self.close(code=1011)
            return
        await self.send_json(
            {
                "type": "snapshot",
                "board": self.board,
                "sessions": [asdict(e) for e in entries],
                "stats": stats(entries),
            }
        )
        self._pruner = asyncio.get_running_loop().create_task(self._prune_forever())

    async def _prune_forever(self):
        """Sessions whose process died without a goodbye disappear within the expiry time."""
        while True:
            await asyncio.sleep(PRUNE_SECONDS)
            try:
                for session_id in await board_store().prune(self.board):
                    await announce(self.board, {"type": "session_end", "id": session_id})
            except Exception as exc:
                logger.warning("Board %s: pruning failed (%s); will retry.", self.board, type(exc).__name__)

    async def kiosk_event(self, message):
        await self.send_json(message["event"])

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Kiosks only listen; anything they send is ignored."""

    async def disconnect(self, code):
        if self._pruner is not None:
            self._pruner.cancel()
        if getattr(self, "_counted", False):
            OPEN_WEBSOCKETS.labels("kiosk").dec()
        try:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        except Exception as exc:
            logger.info("Board %s: leaving the group failed (%s).", self.board, type(exc).__name__)
