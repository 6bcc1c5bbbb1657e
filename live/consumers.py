"""WebSocket consumers, one per socket kind.

``LivePredictConsumer`` at ``/ws/predict/``: the live assessment page (README: "Live predictions
(WebSocket)"); a ``share`` frame puts the session on a kiosk board while its person wants it there.
``KioskConsumer`` at ``/ws/kiosk/<board>/``: a read-only board of anonymous sessions
(docs/kiosk.md).

``LivePredictConsumer`` is a small ASGI application with its own receive loop (Channels allows
both forms; this one needs no channel layer and no per-message dispatch). It only translates:
it parses frames, keeps the session's seq, and asks ``ml_engine.services`` to merge an update
into the session's state (``live_state_merge``) and to predict (``predict_live``). Updates are
coalesced ("latest wins"): the receive loop validates and stores the newest state and goes on
reading, and one task per socket answers the newest pending ``seq`` until nothing newer waits, so
the last keystroke is always answered and the ``seq`` of successive replies only grows. A calm
client's update is answered in the receive loop itself when the folded model serves (nothing
there suspends, so nothing can overtake it): no task switch per keystroke.

Health data never leaves this module except in the reply to its owner: frames are not logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from typing import Any

import orjson
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from rest_framework.utils import json as strict_json

from ml_engine import metrics
from ml_engine.registry import ModelUnavailable
from ml_engine.schema import FEATURE_KEYS, FeatureValidationError
from ml_engine.services import (
    Prediction,
    live_bands,
    live_prediction_inline,
    live_session_assign,
    live_state_merge,
    predict_live,
)
from project.addresses import scope_address, source_key
from project.asgi_types import ASGIApp, Receive, Scope, Send

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
from .ratelimit import FloodGuard, Verdict, budgets
from .wording import whole_percent

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024
# Every reply is far below this by construction (errors name at most a few unknown keys); a reply
# over it would mean a bug, and is replaced by a short error instead of failing the send.
MAX_REPLY_BYTES = 16 * 1024
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_MESSAGE_TOO_BIG_APP = 4009  # the same, where the server only lets applications send 1000/3000-4999
CLOSE_INTERNAL_ERROR = 1011  # a kiosk whose board state or channel layer failed; a live reply that could not be sent
CLOSE_INTERNAL_ERROR_APP = 4011
CLOSE_POLICY_VIOLATION = 1008  # kept flooding after the rate_limited warning
CLOSE_POLICY_VIOLATION_APP = 4008
# Flood control (live/ratelimit.py): every received frame takes a token; 100 a second sustained
# with a burst of 200 is far beyond typing or pasting. Past it the client is told once with
# RATE_LIMITED; still flooding 2 s later (and more than a burst of frames later), it is closed.
FLOOD_RATE = 100.0
FLOOD_BURST = 200.0
FLOOD_CLOSE_AFTER = 2.0
RATE_LIMITED = {"type": "error", "seq": None, "code": "rate_limited", "detail": "Too many messages; slow down."}
REPLY_FAILED = {"type": "error", "seq": None, "code": "internal_error", "detail": "The reply could not be sent."}
YIELD_EVERY = 64  # frames read in a row from a backlog before letting other sockets run
MAX_SEQ = 2**53 - 1  # the largest integer a JavaScript client can count to exactly


class LivePredictConsumer:
    """One person's live assessment: merged feature state in, the newest prediction out.

    An ASGI application (``as_asgi()``) that makes one instance per socket. It never listens on
    the channel layer, so a Redis outage cannot close a person's socket: sharing on a kiosk board
    (only while its person wants it) goes through a ``BoardPublisher``, which runs beside the
    socket, logs layer failures and carries on. Whatever ends the socket (the client, a close of
    ours, a failed send, the server cancelling the application), ``_finish`` runs exactly once:
    the open-sockets gauge goes down, the answering task is cancelled and the board publisher is
    closed.
    """

    @classmethod
    def as_asgi(cls) -> ASGIApp:
        """The ASGI application for the route: one instance of this class per socket."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await cls(scope, send).run(receive)

        return app

    def __init__(self, scope: Scope, send: Send) -> None:
        self.scope = scope
        self._send = send
        self.board: str | None = None  # the kiosk board its person shares on, if any
        self._last: Prediction | None = None  # the newest prediction sent (what sharing shows)
        self._state: dict[str, float | None] = dict.fromkeys(FEATURE_KEYS)
        self._last_seq = -1  # the newest seq accepted from the client
        self._pending: tuple[int, dict[str, float | None]] | None = None
        self._answering: asyncio.Task[None] | None = None
        self._open = False  # accepted, and neither side has closed
        self._finished = False
        self._flood = FloodGuard(rate=FLOOD_RATE, burst=FLOOD_BURST, close_after=FLOOD_CLOSE_AFTER)
        # The keyed hash of the address group: whose answer budget and whose places on a board.
        self._source = source_key(scope_address(scope))
        # Answers a second for this socket's address, shared with its other sockets here.
        self._budget = budgets.bucket(self._source, float(settings.WEBSOCKET_ANSWERS_PER_ADDRESS))
        self._publisher: BoardPublisher | None = None
        # README: "Model registry": drawn once, so the canary or the active version answers this
        # socket for its whole life.
        self._canary = live_session_assign()

    async def run(self, receive: Receive) -> None:
        """The socket's life: accept, read frames until either side closes, then ``_finish``."""
        if (await receive())["type"] != "websocket.connect":
            return
        await self._send({"type": "websocket.accept"})
        self._open = True
        metrics.OPEN_WEBSOCKETS.labels("live").inc()
        try:
            handled = 0
            while self._open:
                message = await receive()
                if not self._open:  # the answering task ended the socket meanwhile
                    break
                kind = message["type"]
                if kind == "websocket.receive":
                    await self._receive(message.get("text"), message.get("bytes"))
                elif kind == "websocket.disconnect":
                    self._open = False
                handled += 1
                if handled % YIELD_EVERY == 0:
                    # Reading a backlog never suspends; let other sockets run now and then.
                    await asyncio.sleep(0)
        finally:
            await self._finish()

    async def _finish(self) -> None:
        """The socket is over: release everything it held, once."""
        if self._finished:
            return
        self._finished = True
        self._open = False
        metrics.OPEN_WEBSOCKETS.labels("live").dec()
        answering = self._answering
        if answering is not None and answering is not asyncio.current_task():
            answering.cancel()
        await self._stop_sharing()

    # Sharing on a kiosk board (docs/kiosk.md, "Sharing"): only while the person has it on.

    async def _share(self, board: str | None) -> None:
        if board == self.board:
            return
        await self._stop_sharing()
        if board is not None:
            # An opaque id for the kiosk: it names this socket, nothing about the person. The
            # owner is the keyed hash of the address group, for the board's fair shares.
            self.board = board
            self._publisher = BoardPublisher(board, secrets.token_urlsafe(9), owner=self._source)
            if self._last is not None:
                self._publish(self._last)

    async def _stop_sharing(self) -> None:
        publisher, self._publisher, self.board = self._publisher, None, None
        if publisher is not None:
            await publisher.close()

    def _publish(self, prediction: Prediction) -> None:
        if self._publisher is None:
            return
        try:
            bands = live_bands(canary=self._canary)  # the bands the answering version chose from
        except ModelUnavailable:
            return
        percent = whole_percent(prediction.risk, prediction.band, bands)
        # Returns at once: the board's outbox sends on its own task, once per tick.
        self._publisher.publish(risk=prediction.risk, band=prediction.band, percent=percent)

    # Frames in.

    async def _receive(self, text: str | None, data: bytes | None) -> None:
        if _too_big(text, data):
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
        if text is not None and '"share"' in text and (share := _share_frame(text)) is not None:
            valid, board, reply = share
            if valid:
                await self._share(board)
            if verdict is Verdict.OK:
                await self._send_json(reply)
            return
        error = self._take(text)
        if error is not None:
            if verdict is Verdict.OK:
                await self._send_json(error)
            return
        if self._pending is None or self._answering is not None or not self._open:
            return  # nothing new, or the answering task will take it
        if (
            verdict is Verdict.OK
            and not self._flood.limited
            and live_prediction_inline(canary=self._canary)
            and self._budget.take()
        ):
            # A calm client and the folded model: answer now, without a task switch (README:
            # "Live predictions (WebSocket)"). Nothing here suspends, so nothing can overtake it.
            seq, state = self._pending
            self._pending = None
            await self._answer(seq, state)
        else:
            self._answering = asyncio.create_task(self._answer_pending())

    def _take(self, text: str | None) -> dict[str, Any] | None:
        """Read one frame into the session's state; the error reply when it is refused."""
        if text is None:
            return _bad("bad_message", "Send JSON text frames; binary frames are not understood.")
        try:
            content = orjson.loads(text)
        except orjson.JSONDecodeError:
            # orjson refuses a little more than RFC 8259 needs (integers past 64 bits, lone
            # surrogates, 1e400): the standard parser has the last word, NaN and Infinity refused.
            try:
                content = strict_json.loads(text)
            except (ValueError, RecursionError):
                return _bad("bad_json", "The frame is not valid JSON.")
        if not isinstance(content, dict) or content.get("type") not in ("update", "reset"):
            return _bad("bad_message", 'Expected an object with "type" "update", "reset" or "share".')
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
            state = live_state_merge(state=self._state, update=features)
        except FeatureValidationError as exc:
            return {"type": "error", "seq": seq, "errors": exc.errors}
        self._accept(seq, state)
        return None

    def _accept(self, seq: int, state: dict[str, float | None]) -> None:
        """Make ``state`` current and the newest to answer (latest wins)."""
        self._last_seq = seq
        self._state = state
        self._pending = (seq, state)

    # Replies out.

    async def _answer_pending(self) -> None:
        try:
            while self._pending is not None and self._open:
                # 0 unless this client floods, or its address spends its budget on other sockets.
                delay = max(self._flood.reply_delay(), self._budget.wait_for_token())
                if delay > 0:
                    await asyncio.sleep(delay)
                    if self._pending is None or not self._open:
                        break
                if not self._budget.take():
                    continue  # another socket of the address took the token first
                seq, state = self._pending
                self._pending = None
                await self._answer(seq, state)
        finally:
            self._answering = None

    async def _answer(self, seq: int, state: dict[str, float | None]) -> None:
        try:
            prediction = await predict_live(features=state, canary=self._canary)
        except ModelUnavailable as exc:
            await self._send_json({"type": "error", "seq": seq, "code": "model_unavailable", "detail": str(exc)})
            return
        except Exception:
            logger.exception("Live prediction failed (features not logged).")
            await self._send_json(
                {"type": "error", "seq": seq, "code": "internal_error", "detail": "The prediction failed."}
            )
            return
        self._last = prediction
        if prediction is None:
            await self._send_json({"type": "cleared", "seq": seq})
            if self._publisher is not None:
                self._publisher.withdraw()
            return
        await self._send_json(_prediction_reply(seq, prediction))
        self._publish(prediction)

    async def _send_json(self, content: dict[str, Any]) -> None:
        if not self._open:
            return
        text = _encode(content)
        if len(text) > MAX_REPLY_BYTES:
            logger.error("Live reply of %d characters not sent (limit %d).", len(text), MAX_REPLY_BYTES)
            text = _encode(REPLY_FAILED)
        try:
            await self._send({"type": "websocket.send", "text": text})
        except Exception as exc:
            # The server refused the reply or the transport is gone. Whatever it was, this socket is
            # over: close it if we still can, and release what it holds now (README: "Hardening").
            logger.warning("Live socket ended: a reply could not be sent (%s).", type(exc).__name__)
            await self._close(CLOSE_INTERNAL_ERROR, CLOSE_INTERNAL_ERROR_APP, "Reply failed")

    async def _close(self, code: int, app_code: int, reason: str) -> None:
        self._open = False
        try:
            try:
                await self._send({"type": "websocket.close", "code": code})
            except Exception:
                # Autobahn (under daphne) lets an application close only with 1000 or 3000-4999.
                # project.serve lets 1008, 1009 and 1011 through; under a plain daphne, close
                # with 4000 + the code.
                await self._send({"type": "websocket.close", "code": app_code, "reason": reason})
        except Exception as exc:
            logger.warning("Live socket: closing failed (%s).", type(exc).__name__)
        finally:
            await self._finish()


def _share_frame(text: str) -> tuple[bool, str | None, dict[str, Any]] | None:
    """A ``{"type": "share", "board": NAME | null}`` frame as (True, the board or None, the reply),
    (False, None, an error reply) for a share frame that is wrong, or None for any other frame."""
    try:
        content = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None  # _take has the last word on what is JSON
    if not isinstance(content, dict) or content.get("type") != "share":
        return None
    if set(content) != {"type", "board"}:
        return False, None, _bad("bad_message", 'A share frame has exactly "type" and "board".')
    board = content["board"]
    if board is None:
        return True, None, {"type": "shared", "board": None}
    if not isinstance(board, str) or not valid_board(board):
        detail = '"board" must be null or 1 to 64 letters, digits, hyphens or underscores.'
        return False, None, _bad("bad_message", detail)
    return True, board, {"type": "shared", "board": board, "after_s": settings.BOARD_DELAY_S}


def _prediction_reply(seq: int, prediction: Prediction) -> dict[str, Any]:
    return {"type": "prediction", "seq": seq, **prediction.as_dict(), "features": prediction.features}


def _encode(content: dict[str, Any]) -> str:
    # orjson: the reply is most of a keystroke's own cost after inference (README: "Benchmarks").
    try:
        return orjson.dumps(content, default=_plain).decode()
    except orjson.JSONEncodeError:
        return json.dumps(content)  # a lone surrogate from a client's key needs JSON's \\u escapes


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):  # a NumPy scalar
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


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

    docs/kiosk.md, "The kiosk socket". The consumer listens on the channel layer on a task of its own instead
    of through Channels' dispatch loop (``channel_layer_alias = None``): there, a failing Redis
    would end the socket with a traceback; here it closes the socket with 1011 and a reason, and
    the kiosk page reconnects. Every ``heartbeat_seconds`` a heartbeat takes the same way as the
    events (board store, channel layer, this socket): a kiosk that stops receiving it knows its
    board is not live, and when two in a row fail or do not come back, the server closes the socket.
    """

    channel_layer_alias = None  # the layer is listened to by _listen, below
    heartbeat_seconds = 5.0
    missed_heartbeats_to_close = 2
    unavailable_reason = "Board unavailable; reconnect shortly."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.board = ""
        self._layer: BaseChannelLayer | None = None
        self._channel: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
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
            layer = self._layer = get_channel_layer()
            channel: str = await bounded(layer.new_channel)
            self._channel = channel
            await bounded(layer.group_add, group_name(self.board), channel)
            message = await board_snapshot(self.board)  # pruned first, capped
        except (*BOARD_ERRORS, *LAYER_ERRORS) as exc:
            await self._unavailable(exc)
            return
        await self.send_json(message)
        janitors.retain(self.board)
        self._retained = True
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(layer, channel)),
            loop.create_task(self._heartbeat(layer, channel)),
        ]

    async def _listen(self, layer: BaseChannelLayer, channel: str) -> None:
        try:
            while True:
                # No deadline: a board may be quiet for hours. A frozen Redis hangs here; the
                # heartbeat notices.
                message = await layer.receive(channel)
                if message.get("type") == "kiosk.batch":
                    sent = True
                    for event in message["events"]:
                        sent = sent and await self._relay(event)
                elif message.get("type") == "kiosk.heartbeat":
                    self._beats_back = max(self._beats_back, message["n"])
                    sent = await self._relay({"type": "heartbeat", "at": message["at"], "active": message["active"]})
                else:
                    sent = True
                if not sent:
                    return
        except LAYER_ERRORS as exc:
            await self._unavailable(exc)
        except Exception:
            logger.exception("Board %s: kiosk listener failed.", self.board)
            await self._close_unavailable()

    async def _heartbeat(self, layer: BaseChannelLayer, channel: str) -> None:
        # One late or failed heartbeat is a busy moment; two in a row, the board is not live
        # (docs/kiosk.md, "When the network or the server fails").
        missed = 0
        try:
            while True:
                await asyncio.sleep(self.heartbeat_seconds)
                try:
                    if self._beats_back < self._beats_sent:
                        raise TimeoutError("the last heartbeat did not come back through the channel layer")
                    async with asyncio.timeout(STORE_TIMEOUT):
                        active = await board_store().count(self.board)
                    self._beats_sent += 1
                    beat = {"type": "kiosk.heartbeat", "n": self._beats_sent, "at": now_iso(), "active": active}
                    await bounded(layer.send, channel, beat)
                except (*BOARD_ERRORS, *LAYER_ERRORS):
                    missed += 1
                    if missed >= self.missed_heartbeats_to_close:
                        raise
                else:
                    missed = 0
        except (*BOARD_ERRORS, *LAYER_ERRORS) as exc:
            await self._unavailable(exc)
        except Exception:
            logger.exception("Board %s: kiosk heartbeat failed.", self.board)
            await self._close_unavailable()

    async def _relay(self, content: dict[str, Any]) -> bool:
        """Send ``content`` to the kiosk; False when the socket is gone (the disconnect follows)."""
        try:
            await self.send_json(content)
        except Exception as exc:
            # The server refused the frame: the client left or the transport is gone (the
            # exception depends on the server, e.g. autobahn's Disconnected). Not a bug.
            logger.info("Board %s: a kiosk went away (%s).", self.board, type(exc).__name__)
            return False
        return True

    async def _unavailable(self, exc: BaseException) -> None:
        logger.warning("Board %s: closing a kiosk, the board is unavailable (%s).", self.board, type(exc).__name__)
        await self._close_unavailable()

    async def _close_unavailable(self) -> None:
        if not self._closing:
            self._closing = True
            try:
                await self.close(code=CLOSE_INTERNAL_ERROR, reason=self.unavailable_reason)
            except Exception as exc:  # the socket is already gone; see _relay
                logger.info("Board %s: a kiosk went away (%s).", self.board, type(exc).__name__)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
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
        if self._layer is not None and self._channel is not None:
            try:
                await bounded(self._layer.group_discard, group_name(self.board), self._channel)
            except LAYER_ERRORS as exc:
                # The group entry expires with the layer's group_expiry.
                logger.info("Board %s: leaving the group failed (%s).", self.board, type(exc).__name__)
