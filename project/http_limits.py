"""Limits daphne's HTTP side does not have: body size while reading, slow clients, file descriptors.

README: "Limits". Installed once at start by ``project.serve`` (``install(server)``):

- A request body over ``HTTP_MAX_BODY_BYTES`` is refused with 413 as soon as the Content-Length
  says so, or as soon as a chunked body passes the limit while it streams in; accepted bodies are
  kept in memory (at most the limit), never spooled to a temporary file as twisted does above
  100 kB. The 413 has the API's error shape under /api/ and /v2/, a plain page elsewhere.
- A request (line, headers and body) must arrive within ``HTTP_REQUEST_TIMEOUT`` seconds of the
  connection opening or of the previous response; a client that trickles bytes is answered 408
  and disconnected. A connection that sends nothing is closed after ``HTTP_IDLE_TIMEOUT``.
  Neither applies once a connection is a WebSocket.
- The process's open-file limit is raised from its soft to its hard limit, and a failed
  ``accept()`` for lack of descriptors is logged (twisted only tells its own log, which daphne
  does not show).
"""

from __future__ import annotations

import io
import json
import logging
import resource
import time
from typing import TYPE_CHECKING

from daphne.http_protocol import WebRequest
from django.conf import settings
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.web import http
from zope.interface import implementer

from project.errors import api_error_body

if TYPE_CHECKING:
    # Imported for its name only: importing daphne.server installs twisted's asyncio reactor.
    from daphne.server import Server

logger = logging.getLogger(__name__)

# After a refusal, the rest of the body is read and dropped for this long before the connection
# closes, so the client can read the answer (closing with unread data makes the kernel reset it).
LINGER_SECONDS = 2.0
# One log line per this many seconds while accept() keeps failing.
ACCEPT_FAILURE_LOG_INTERVAL = 10.0


def _answer(path: bytes, status: int, reason: str, message: str) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, in the error shape of ``path``."""
    text_path = path.split(b"?", 1)[0].decode("ascii", "replace")
    body_json = api_error_body(text_path, message)
    if body_json is not None:
        body, content_type = json.dumps(body_json).encode(), b"application/json"
    else:
        body = f"<!doctype html><title>{status} {reason}</title><h1>{reason}</h1><p>{message}</p>\n".encode()
        content_type = b"text/html; charset=utf-8"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: ".encode()
        + content_type
        + f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
    )
    return head + body


class _Discard:
    """Stands in for the body of a refused request."""

    closed = False

    def write(self, data: bytes) -> None:
        pass

    def seek(self, *args: object) -> int:
        return 0

    def read(self, *args: object) -> bytes:
        return b""

    def close(self) -> None:
        self.closed = True


class LimitedWebRequest(WebRequest):
    """Daphne's request, with the body counted while it arrives and kept in memory."""

    refused = False
    received = 0
    content: io.BytesIO | _Discard

    def gotLength(self, length: int | None) -> None:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and length is not None and length > limit:
            self._refuse_too_large(limit)
            return
        self.content = io.BytesIO()  # at most `limit` bytes: no temporary file

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.received += len(data)
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and self.received > limit:
            self.content.close()
            self._refuse_too_large(limit)
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.refused:
            return  # already answered; the connection is closing
        # Twisted would parse a form or multipart body into request.args (and answer a malformed
        # multipart body with its own bare 400); daphne never reads args and Django parses bodies
        # itself, so a body is parsed once, by the application, in its error shape.
        self._parsePOSTFormSubmission = False
        super().requestReceived(command, path, version)

    def _refuse_too_large(self, limit: int) -> None:
        self.refused = True
        self.content = _Discard()
        channel = self.channel
        channel.refuse(413, "Payload Too Large", f"The body is larger than {limit} bytes.")


class LimitedHTTPChannel(http.HTTPChannel):
    """Twisted's HTTP channel with a deadline for each request to arrive in full."""

    _deadline: IDelayedCall | None = None
    _closing: IDelayedCall | None = None
    answered = False

    # Daphne's factory sets requestFactory to its WebRequest; requests here are always limited.
    @property
    def requestFactory(self) -> type[LimitedWebRequest]:
        return LimitedWebRequest

    @requestFactory.setter
    def requestFactory(self, value: object) -> None:
        pass

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()

    def requestDone(self, request: http.Request) -> None:
        super().requestDone(request)
        if self.persistent and not self.answered:
            self._arm()

    def dataReceived(self, data: bytes) -> None:
        if self.answered:
            return  # refused: drop what else arrives until the connection closes
        super().dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        super().connectionLost(reason)

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.callLater(settings.HTTP_REQUEST_TIMEOUT, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._handlingRequest or self.answered:
            return
        self.refuse(408, "Request Timeout", "The request did not arrive in time.")

    def refuse(self, status: int, reason: str, message: str) -> None:
        """Answer ``status`` now, drop the rest of what the client sends, and close shortly."""
        if self.answered or self.transport is None:
            return
        self.answered = True
        self._disarm()
        self.setTimeout(None)
        path = getattr(self, "_path", b"/") or b"/"
        self.transport.write(_answer(path, status, reason, message))
        self._closing = self.callLater(LINGER_SECONDS, self.loseConnection)


def _limited_channel() -> http._GenericHTTPChannelProtocol:
    # Set on the factory instance (not its class), so it is called without arguments.
    return http._GenericHTTPChannelProtocol(LimitedHTTPChannel())


def raise_fd_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one (each connection is one descriptor)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            logger.warning("Could not raise the open-file limit from %s to %s: %s", soft, hard, exc)
    return soft, hard


@implementer(ILogObserver)
class _AcceptFailureLog:
    """Forwards twisted's "could not accept" events to this module's logger, at most every
    ACCEPT_FAILURE_LOG_INTERVAL seconds."""

    def __init__(self) -> None:
        self.last = 0.0
        self.missed = 0

    def __call__(self, event: LogEvent) -> None:
        text = event.get("log_format") or ""
        if not (text.startswith("EMFILE") or text.startswith("Could not accept")):
            return
        now = time.monotonic()
        if now - self.last < ACCEPT_FAILURE_LOG_INTERVAL:
            self.missed += 1
            return
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        logger.error(
            "Refusing new connections: out of file descriptors (limit %s; %s more failures since the last "
            'report). README: "Limits".',
            soft,
            self.missed,
        )
        self.last, self.missed = now, 0


def install(server: Server) -> None:
    """Apply the limits to a daphne ``Server`` whose HTTP factory exists (after ``run`` started)."""
    factory = server.http_factory
    if factory.protocol is _limited_channel:
        return  # listen_success runs once per endpoint
    factory.protocol = _limited_channel
    factory.timeOut = settings.HTTP_IDLE_TIMEOUT
    soft, _ = raise_fd_limit()
    globalLogPublisher.addObserver(_AcceptFailureLog())
    logger.info(
        "HTTP limits: body %s bytes, request %s s, idle %s s, %s file descriptors.",
        settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        settings.HTTP_REQUEST_TIMEOUT,
        settings.HTTP_IDLE_TIMEOUT,
        soft,
    )
