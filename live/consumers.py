"""WebSocket consumers, one class per socket kind.

``LivePredictConsumer`` at ``/ws/predict/``: the live assessment page (contract §6 in the README).
``KioskConsumer`` at ``/ws/kiosk/<board>/``: a read-only board of anonymous sessions (contract §7).

The consumer only translates: it parses frames, keeps the session's merged feature state and asks
``ml_engine.services.predict`` for the risk. Updates are coalesced ("latest wins"): the receive
handler stores the newest state and returns at once, and one task per connection answers the
newest pending ``seq`` until nothing newer is waiting, so the last keystroke is always answered
and the ``seq`` of successive replies only grows.

Health data never leaves this module except in the reply to its owner: frames are not logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db import close_old_connections

from ml_engine import metrics
from ml_engine.registry import ModelUnavailable, active_model
from ml_engine.schema import FEATURE_KEYS, FeatureValidationError, clean_features
from ml_engine.services import Prediction, predict

from .boards import (
    BOARD_ERRORS,
    STORE_TIMEOUT,
    BoardPublisher,
    board_store,
    group_name,
    janitors,
    now_iso,
    valid_board,
)
from .boards import snapshot as board_snapshot
from .layer import LAYER_ERRORS, bounded
from .ratelimit import FloodGuard, Verdict

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_MESSAGE_TOO_BIG_APP = 4009  # the same, where the server only lets applications send 1000/3000-4999
CLOSE_INTERNAL_ERROR = 1011  # a kiosk whose board state or channel layer failed
CLOSE_POLICY_VIOLATION = 1008  # kept flooding after the rate_limited warning
CLOSE_POLICY_VIOLATION_APP = 4008
# Flood control (live/ratelimit.py): every received frame takes a token; 100 a second sustained
# with a burst of 200 is far beyond typing or pasting. Past it the client is told once with
# RATE_LIMITED; still flooding 2 s later (and more than a burst of frames later), it is closed.
FLOOD_RATE = 100.0
FLOOD_BURST = 200.0
FLOOD_CLOSE_AFTER = 2.0
RATE_LIMITED = {"type": "error", "seq": None, "code": "rate_limited", "detail": "Too many messages; slow down."}
YIELD_EVERY = 64  # frames read in a row from a backlog before letting other sockets run
MAX_SEQ = 2**53 - 1  # the largest integer a JavaScript client can count to exactly

# Inference that may take longer than ~100 µs (scikit-learn, or a first model load that reads the
# database) runs here: a few dedicated threads, never asgiref's single thread-sensitive executor
# that Django's sync views and ORM calls from async code share.
_inference_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="live-predict")


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _predict_blocking(features: dict[str, float | None]) -> Prediction:
    try:
        return predict(features=features, interface="ws")
    finally:
        close_old_connections()  # a first model load may have opened a connection in this thread


class LivePredictConsumer(AsyncWebsocketConsumer):
    """One person's live assessment: merged feature state in, the newest prediction out."""

    # Never listen on the channel layer. Channels would otherwise create a channel for every
    # socket and receive on it in the same dispatch loop as the WebSocket, so a Redis outage would
    # raise there and close the socket. Publishing to a kiosk board goes through a BoardPublisher
    # instead, which runs beside the socket, logs layer failures and carries on.
    channel_layer_alias = None

    async def websocket_connect(self, message: dict) -> None:
        self.board: str | None = self._board_from_query()
        self._state: dict[str, float | None] = dict.fromkeys(FEATURE_KEYS)
        self._last_seq = -1  # the newest seq accepted from the client
        self._pending: tuple[int, dict[str, float | None]] | None = None
        self._answering: asyncio.Task | None = None
        self._open = True
        self._flood = FloodGuard(rate=FLOOD_RATE, burst=FLOOD_BURST, close_after=FLOOD_CLOSE_AFTER)
        # An opaque id for the kiosk: it names this socket, nothing about the person.
        self._publisher = BoardPublisher(self.board, secrets.token_urlsafe(9)) if self.board else None
        await self.accept()
        metrics.OPEN_WEBSOCKETS.labels("live").inc()

    async def __call__(self, scope, receive, send) -> None:
        # Channels' loop (await_many_dispatch) makes a task and an asyncio.wait per message, which
        # lets a flooding client's backlog outgrow what the consumer reads. With no channel layer
        # to listen on, read the socket directly, yielding now and then during a backlog.
        self.scope = scope
        self.channel_layer = None
        self.base_send = send
        handled = 0
        try:
            while True:
                await self.dispatch(await receive())
                handled += 1
                if handled % YIELD_EVERY == 0:
                    await asyncio.sleep(0)
        except StopConsumer:
            pass

    async def dispatch(self, message: dict) -> None:
        # Channels' dispatch closes stale database connections before every message through
        # sync_to_async(thread_sensitive=True), i.e. a round trip through the one thread that sync
        # views share, per keystroke. This consumer never touches the database on the event loop.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict) -> None:
        if self._open:
            self._open = False
            metrics.OPEN_WEBSOCKETS.labels("live").dec()
        if self._answering is not None:
            self._answering.cancel()
        if self._publisher is not None:
            await self._publisher.close()
        raise StopConsumer()

    # Frames in.

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if not self._open:
            return
        if _too_big(text_data, bytes_data):
            await self._close(CLOSE_MESSAGE_TOO_BIG, CLOSE_MESSAGE_TOO_BIG_APP, "Frame over 64 KiB")
            return
        verdict = self._flood.frame()
        if verdict is Verdict.CLOSE:
            await self._close(CLOSE_POLICY_VIOLATION, CLOSE_POLICY_VIOLATION_APP, "Too many messages")
            return
        if verdict is Verdict.WARN:
            await self._send_json(RATE_LIMITED)
        # Over the limit, a frame is still read and merged (so the newest state is never lost and
        # is answered once the client slows down), but nothing is sent for it.
        error = self._take(text_data)
        if error is not None and verdict is Verdict.OK:
            await self._send_json(error)

    def _take(self, text_data: str | None) -> dict[str, Any] | None:
        """Read one frame into the session's state; the error reply when it is refused."""
        if text_data is None:
            return _bad("bad_message", "Send JSON text frames; binary frames are not understood.")
        try:
            content = json.loads(text_data, parse_constant=_reject_constant)
        except (ValueError, RecursionError):
            return _bad("bad_json", "The frame is not valid JSON.")
        if not isinstance(content, dict) or content.get("type") not in ("update", "reset"):
            return _bad("bad_message", 'Expected an object with "type" "update" or "reset".')
        seq = content.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= MAX_SEQ:
            return _bad("bad_message", f'"seq" must be an integer from 0 to {MAX_SEQ}.')
        if seq <= self._last_seq:
            return _bad("bad_message", f'"seq" must grow: {seq} is not after {self._last_seq}.')
        if content["type"] == "reset":
            self._accept(seq, dict.fromkeys(FEATURE_KEYS))
            return None
        features = content.get("features")
        if not isinstance(features, dict):
            return _bad("bad_message", 'An update needs "features": an object of feature values.')
        try:
            state = clean_features({**self._state, **features}, allow_empty=True)
        except FeatureValidationError as exc:
            metrics.INVALID_INPUTS.labels("ws").inc()
            return {"type": "error", "seq": seq, "errors": exc.errors}
        self._accept(seq, state)
        return None

    def _accept(self, seq: int, state: dict[str, float | None]) -> None:
        """Make ``state`` current and make sure the newest seq gets answered (latest wins)."""
        self._last_seq = seq
        self._state = state
        self._pending = (seq, state)
        if self._answering is None:
            self._answering = asyncio.create_task(self._answer_pending())

    # Replies out.

    async def _answer_pending(self) -> None:
        try:
            while self._pending is not None and self._open:
                delay = self._flood.reply_delay()  # 0 unless the client is flooding
                if delay > 0:
                    await asyncio.sleep(delay)
                    if self._pending is None or not self._open:
                        break
                seq, state = self._pending
                self._pending = None
                await self._answer(seq, state)
        finally:
            self._answering = None

    async def _answer(self, seq: int, state: dict[str, float | None]) -> None:
        if all(value is None for value in state.values()):
            await self._send_json({"type": "cleared", "seq": seq})
            if self._publisher is not None:
                self._publisher.withdraw()
            return
        try:
            prediction = await self._predict(state)
        except ModelUnavailable as exc:
            await self._send_json({"type": "error", "seq": seq, "code": "model_unavailable", "detail": str(exc)})
            return
        except Exception:
            logger.exception("Live prediction failed (features not logged).")
            await self._send_json(
                {"type": "error", "seq": seq, "code": "internal_error", "detail": "The prediction failed."}
            )
            return
        await self._send_json(
            {"type": "prediction", "seq": seq, **prediction.as_dict(), "features": prediction.features}
        )
        if self._publisher is not None:
            # Returns at once: the publisher sends on its own task, at most 5 a second.
            self._publisher.publish(risk=prediction.risk, band=prediction.band)

    async def _predict(self, state: dict[str, float | None]) -> Prediction:
        served = active_model.current
        if served is not None and served.model.fast is not None:
            return predict(features=state, interface="ws")  # folded model: a few µs, inline is cheaper
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_inference_pool, _predict_blocking, state)

    async def _send_json(self, content: dict[str, Any]) -> None:
        if self._open:
            await self.send(text_data=json.dumps(content))

    async def _close(self, code: int, app_code: int, reason: str) -> None:
        self._open = False
        metrics.OPEN_WEBSOCKETS.labels("live").dec()
        if self._answering is not None:
            self._answering.cancel()
        try:
            await self.close(code=code)
        except Exception:
            # Autobahn (under daphne) lets an application close only with 1000 or 3000-4999.
            # project.serve lets 1008 and 1009 through (and daphne sends 1009 itself for a frame
            # over --websocket-max-message-size); under a plain daphne, close with 4000 + the code.
            await self.close(code=app_code, reason=reason)

    def _board_from_query(self) -> str | None:
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        name = (query.get("board") or [""])[-1]
        return name if valid_board(name) else None


def _bad(code: str, detail: str) -> dict[str, Any]:
    return {"type": "error", "seq": None, "code": code, "detail": detail}


def _too_big(text_data: str | None, bytes_data: bytes | None) -> bool:
    if bytes_data is not None:
        return len(bytes_data) > MAX_FRAME_BYTES
    if text_data is None:
        return False
    # A character is at most 4 bytes in UTF-8: only encode when the length alone cannot tell.
    return len(text_data) > MAX_FRAME_BYTES or (
        len(text_data) * 4 > MAX_FRAME_BYTES and len(text_data.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES
    )


class KioskConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/kiosk/<board>/``: a snapshot of the board, then its sessions' events and a heartbeat.

    README: "Kiosk boards". The consumer listens on the channel layer on a task of its own instead
    of through Channels' dispatch loop (``channel_layer_alias = None``): there, a failing Redis
    would end the socket with a traceback; here it closes the socket with 1011 and a reason, and
    the kiosk page reconnects. Every ``heartbeat_seconds`` a heartbeat takes the same way as the
    events (board store, channel layer, this socket): a kiosk that stops receiving it knows its
    board is not live, and when one has not come back by the next, the server closes the socket.
    """

    channel_layer_alias = None  # the layer is listened to by _listen, below
    heartbeat_seconds = 5.0
    unavailable_reason = "Board unavailable; reconnect shortly."

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.board = ""
        self._layer: BaseChannelLayer | None = None
        self._channel: str | None = None
        self._tasks: list[asyncio.Task] = []
        self._counted = False  # whether this socket is in the open-sockets gauge
        self._retained = False  # whether this socket keeps its board's pruning going
        self._closing = False
        self._beats_sent = 0
        self._beats_back = 0

    async def connect(self) -> None:
        self.board = self.scope["url_route"]["kwargs"]["board"]
        # Accept first: a board that cannot be read gets a close with a reason, not a hung handshake.
        await self.accept()
        metrics.OPEN_WEBSOCKETS.labels("kiosk").inc()
        self._counted = True
        try:
            # Join the group before reading the snapshot, so no event falls between the two.
            self._layer = get_channel_layer()
            self._channel = await bounded(self._layer.new_channel)
            await bounded(self._layer.group_add, group_name(self.board), self._channel)
            message = await board_snapshot(self.board)  # pruned first, capped
        except (*BOARD_ERRORS, *LAYER_ERRORS) as exc:
            await self._unavailable(exc)
            return
        await self.send_json(message)
        janitors.retain(self.board)
        self._retained = True
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen()), loop.create_task(self._heartbeat())]

    async def _listen(self) -> None:
        try:
            while True:
                # No deadline: a board may be quiet for hours. A frozen Redis hangs here; the
                # heartbeat notices.
                message = await self._layer.receive(self._channel)
                if message.get("type") == "kiosk.event":
                    await self.send_json(message["event"])
                elif message.get("type") == "kiosk.heartbeat":
                    self._beats_back = max(self._beats_back, message["n"])
                    await self.send_json({"type": "heartbeat", "at": message["at"], "active": message["active"]})
        except LAYER_ERRORS as exc:
            await self._unavailable(exc)
        except Exception:
            logger.exception("Board %s: kiosk listener failed.", self.board)
            await self._close_unavailable()

    async def _heartbeat(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.heartbeat_seconds)
                if self._beats_back < self._beats_sent:
                    raise TimeoutError("the last heartbeat did not come back through the channel layer")
                async with asyncio.timeout(STORE_TIMEOUT):
                    active = await board_store().count(self.board)
                self._beats_sent += 1
                beat = {"type": "kiosk.heartbeat", "n": self._beats_sent, "at": now_iso(), "active": active}
                await bounded(self._layer.send, self._channel, beat)
        except (*BOARD_ERRORS, *LAYER_ERRORS) as exc:
            await self._unavailable(exc)
        except Exception:
            logger.exception("Board %s: kiosk heartbeat failed.", self.board)
            await self._close_unavailable()

    async def _unavailable(self, exc: BaseException) -> None:
        logger.warning("Board %s: closing a kiosk, the board is unavailable (%s).", self.board, type(exc).__name__)
        await self._close_unavailable()

    async def _close_unavailable(self) -> None:
        if not self._closing:
            self._closing = True
            await self.close(code=CLOSE_INTERNAL_ERROR, reason=self.unavailable_reason)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        """Kiosks only listen; anything they send is ignored."""

    async def disconnect(self, code: int) -> None:
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        if self._retained:
            self._retained = False
            janitors.release(self.board)
        if self._counted:
            self._counted = False
            metrics.OPEN_WEBSOCKETS.labels("kiosk").dec()
        if self._channel is not None:
            try:
                await bounded(self._layer.group_discard, group_name(self.board), self._channel)
            except LAYER_ERRORS as exc:
                # The group entry expires with the layer's group_expiry.
                logger.info("Board %s: leaving the group failed (%s).", self.board, type(exc).__name__)
