"""``python -m project.serve``: daphne's command line with this project's production options and a
few WebSocket protocol changes (README: "Serving by hand").

``PRODUCTION_OPTIONS`` is the one definition of how daphne runs here. They are the command line's
defaults, so the Makefile, the Dockerfile and tests/servers.py pass only the address and the
application; a flag given explicitly still wins (tests shorten the ping times that way).

The WebSocket protocol (``ServingWebSocketProtocol``) differs from daphne's in five ways:

* **Close codes.** Autobahn lets an application close only with 1000 or 3000-4999, although
  RFC 6455 (§7.4.1) gives servers 1008 "policy violation", 1009 "message too big" and 1011
  "internal error". Those three are sent as they are; other codes go through autobahn's check.
* **1009, not a dropped connection.** With autobahn's ``failByDrop`` off, a message over
  ``--websocket-max-message-size`` is closed with 1009 instead of the TCP connection being dropped.
* **Pings that time out whatever the client sends.** Daphne pings only after ``--ping-interval``
  without an incoming frame, and autobahn restarts the pong timeout on any incoming traffic, so a
  client that keeps sending was never pinged out. Here autobahn pings every ``--ping-interval``
  and drops a socket whose pong has not come ``--ping-timeout`` seconds later.
* **Read backpressure.** Daphne reads a socket as fast as the client writes and queues every frame
  for the application without limit. Here a socket is not read while its application has
  ``READ_HIGH_WATER`` frames waiting; the application's ``receive`` reports each frame it takes,
  and reading resumes when ``READ_LOW_WATER`` are left. Reads are at most ``READ_CHUNK`` bytes.
* **A bounded send buffer.** A client that sends but never reads made the server buffer its
  replies without limit. The kernel's send buffer of a WebSocket is fixed at
  ``KERNEL_SEND_BUFFER``; the transport tells the protocol when a socket's unsent bytes pass
  ``READ_CHUNK`` (Twisted's producer API) and when they are all sent; a socket that gets more than
  ``SEND_BUFFER_LIMIT`` further bytes in between (replies and pongs alike) is closed with 1008 and
  nothing more is buffered for it; autobahn drops the connection if the close handshake does not finish within a second.

At start-up, once the application is imported, the objects that exist are frozen (``gc.freeze``):
the garbage collector never walks them again, so a collection that requests trigger costs what
requests allocated, not the whole of Django and scikit-learn.

``check_dependencies`` runs at start-up: every daphne, autobahn and Twisted name this module
relies on must exist, or the server refuses to start with a message naming the installed versions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import inspect
import logging
import math
import socket
from collections.abc import Callable
from importlib import metadata
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory
from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol
from twisted.internet import abstract
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from project import http_limits
from project.asgi_types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("project.serve")  # also when run as __main__

# The production options (README: "Serving by hand"), as daphne's command line names them.
PRODUCTION_OPTIONS = {
    "websocket_timeout": -1,  # kiosks stay connected for days
    "websocket_connect_timeout": 10,
    "ping_interval": 20,
    "ping_timeout": 30,
    "application_close_timeout": 10,
    "websocket_max_message_size": 65536,
    "websocket_max_frame_size": 65536,
}

SERVER_CLOSE_CODES = frozenset({1008, 1009, 1011})
READ_HIGH_WATER = 256  # frames waiting for the application
READ_LOW_WATER = 32
READ_CHUNK = 8192  # bytes per read from one WebSocket (Twisted's default is 64 KiB)
SEND_BUFFER_LIMIT = 256 * 1024  # unsent bytes past READ_CHUNK before a socket is closed
# The kernel's send buffer for a WebSocket, fixed instead of autotuned (up to 4 MiB on Linux): what a
# client that does not read can hold in kernel memory. Replies are small; 64 KiB is many of them.
KERNEL_SEND_BUFFER = 64 * 1024
SEND_BUFFER_FULL = b"Send buffer full: the client does not read"
# An ASGI scope extension: the protocol's callback that the application's receive calls.
RECEIVED_EXTENSION = "project.serve.received"


def _parameters(function: Callable[..., object]) -> set[str]:
    return set(inspect.signature(function).parameters)


# What this module uses from daphne, autobahn and Twisted beyond their documented entry points.
RELIED_ON = {
    "daphne Server": (Server, ("create_application", "run")),
    "daphne WebSocketProtocol": (
        WebSocketProtocol,
        ("applicationCreateWorked", "onOpen", "onMessage", "serverSend", "serverClose", "sendCloseFrame"),
    ),
    "autobahn WebSocketServerProtocol": (WebSocketProtocol, ("registerProducer", "sendData", "STATE_CLOSED")),
    "Twisted FileDescriptor": (
        abstract.FileDescriptor,
        ("bufferSize", "pauseProducing", "resumeProducing", "registerProducer", "unregisterProducer"),
    ),
}
RELIED_ON_PARAMETERS = {
    "daphne Server()": (Server.__init__, {"application", "ping_interval", "ping_timeout", "ready_callable"}),
    "autobahn setProtocolOptions()": (
        WebSocketServerFactory.setProtocolOptions,
        {"failByDrop", "autoPingInterval", "autoPingTimeout", "autoPingRestartOnAnyTraffic"},
    ),
}


def check_dependencies(parser: argparse.ArgumentParser | None = None) -> None:
    """Refuse to start, naming the installed versions, when something relied on is missing."""
    missing = [
        f"{label}.{name}" for label, (owner, names) in RELIED_ON.items() for name in names if not hasattr(owner, name)
    ]
    missing += [
        f"{label} parameter {name}"
        for label, (function, names) in RELIED_ON_PARAMETERS.items()
        for name in sorted(names - _parameters(function))
    ]
    if parser is not None:  # every production option has a non-None default in daphne's parser
        missing += [f"daphne option {name}" for name in PRODUCTION_OPTIONS if parser.get_default(name) is None]
    if missing:
        versions = ", ".join(f"{name} {metadata.version(name)}" for name in ("daphne", "autobahn", "Twisted"))
        raise SystemExit(
            f"project.serve cannot run on the installed {versions}: missing {', '.join(missing)}. "
            "Install the versions pinned in requirements.txt, or adapt project/serve.py."
        )


@implementer(IPushProducer)
class _SendBufferWatch:
    """Told by the transport when the socket's unsent bytes pass its bufferSize and when they are
    all sent (a streaming producer, in Twisted's terms); it produces nothing itself."""

    def __init__(self, protocol: ServingWebSocketProtocol) -> None:
        self.protocol = protocol

    def pauseProducing(self) -> None:
        # Called on every write while the buffer is over bufferSize: count from the first one.
        if self.protocol.send_backlog is None:
            self.protocol.send_backlog = 0

    def resumeProducing(self) -> None:
        self.protocol.send_backlog = None

    def stopProducing(self) -> None:
        self.protocol.send_backlog = None


class ServingWebSocketProtocol(WebSocketProtocol):
    _queue: asyncio.Queue | None = None  # the application's input queue
    _reading_paused = False
    _send_refused = False
    send_backlog: int | None = None  # bytes sent since the transport's buffer went over bufferSize

    def applicationCreateWorked(self, application_queue: asyncio.Queue) -> None:
        self._queue = application_queue
        return super().applicationCreateWorked(application_queue)

    def onOpen(self) -> None:
        self.transport.bufferSize = READ_CHUNK
        with contextlib.suppress(AttributeError, OSError):  # not a socket (tests), or refused
            self.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        # The HTTP channel that read the upgrade request is still the transport's producer; it has
        # nothing left to produce. The watch takes its place.
        self.transport.unregisterProducer()
        self.registerProducer(_SendBufferWatch(self), True)
        super().onOpen()

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        super().onMessage(payload, isBinary)
        if not self._reading_paused and self._queue is not None and self._queue.qsize() >= READ_HIGH_WATER:
            self._reading_paused = True
            self.transport.pauseProducing()

    def application_received(self) -> None:
        """The application took a message from its queue: read again once it has caught up."""
        if (
            self._reading_paused
            and self._queue is not None
            and self._queue.qsize() <= READ_LOW_WATER
            and self.state != self.STATE_CLOSED
        ):
            self._reading_paused = False
            self.transport.resumeProducing()

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        # Every frame is written here: the application's messages, but also the pongs autobahn
        # answers pings with, so a client that pings and never reads is bounded too.
        if self._send_refused:
            return
        if self.send_backlog is not None:
            self.send_backlog += len(data)
            if self.send_backlog > SEND_BUFFER_LIMIT:
                self._refuse_sends()
                return
        super().sendData(data, sync, chopsize)

    def _refuse_sends(self) -> None:
        logger.warning("WebSocket %s does not read what it is sent: closed with 1008.", self.client_addr)
        self.send_backlog = None  # lets the close frame itself through
        self.sendCloseFrame(code=1008, reasonUtf8=SEND_BUFFER_FULL)
        self._send_refused = True  # nothing more is buffered for this socket

    def serverClose(self, code: int | None = None) -> None:
        if code in SERVER_CLOSE_CODES:
            self.sendCloseFrame(code=code)
        else:
            super().serverClose(code)


def _reporting_receive(application: ASGIApp) -> ASGIApp:
    """Wrap the ASGI application so that its ``receive`` tells the protocol each message it takes."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        taken = (scope.get("extensions") or {}).get(RECEIVED_EXTENSION)
        if taken is None:
            return await application(scope, receive, send)

        async def reporting_receive() -> Message:
            message = await receive()
            taken()
            return message

        return await application(scope, reporting_receive, send)

    return app


class ServingServer(Server):
    def __init__(
        self,
        application: ASGIApp,
        *,
        ping_interval: float = 20,
        ping_timeout: float = 30,
        ready_callable: Callable[[], object] | None = None,
        **kwargs: Any,
    ) -> None:
        self.websocket_ping_interval = ping_interval
        self._then_ready = ready_callable
        # Daphne's own ping (after ping_interval without incoming frames) is off: autobahn pings.
        super().__init__(
            application=_reporting_receive(application),
            ping_interval=math.inf,
            ping_timeout=ping_timeout,
            ready_callable=self._configure_websockets,
            **kwargs,
        )

    def _configure_websockets(self) -> None:
        # Called by Server.run once its factories exist, before the reactor starts.
        if not hasattr(self, "ws_factory"):
            RELIED_ON["daphne Server (after run)"] = (self, ("ws_factory",))
            check_dependencies()
        http_limits.install(self)  # body size, slow clients, file descriptors (project/http_limits.py)
        self.ws_factory.protocol = ServingWebSocketProtocol
        self.ws_factory.setProtocolOptions(
            failByDrop=False,
            autoPingInterval=self.websocket_ping_interval,
            autoPingTimeout=self.ping_timeout,
            autoPingRestartOnAnyTraffic=False,
        )
        # Everything imported so far (Django, scikit-learn, the application) lives as long as the
        # process: frozen, it is left out of every garbage collection, so a collection that a
        # request's allocations trigger walks only what requests made (README: "Serving by hand").
        gc.freeze()
        if self._then_ready is not None:
            self._then_ready()

    def log_action(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        # The access log carries paths only (README: "Health data"): daphne logs an HTTP request's
        # query string too, and a query holds whatever a client put in it.
        path = details.get("path")
        if isinstance(path, str) and "?" in path:
            details = {**details, "path": path.split("?", 1)[0]}
        super().log_action(protocol, action, details)

    def create_application(self, protocol: WebSocketProtocol, scope: Scope) -> asyncio.Queue | None:
        if isinstance(protocol, ServingWebSocketProtocol):
            extensions = {**(scope.get("extensions") or {}), RECEIVED_EXTENSION: protocol.application_received}
            scope = {**scope, "extensions": extensions}
        return super().create_application(protocol, scope)


class ServingCommandLineInterface(CommandLineInterface):
    server_class = ServingServer

    def __init__(self) -> None:
        super().__init__()
        check_dependencies(self.parser)
        self.parser.set_defaults(**PRODUCTION_OPTIONS)

    def run(self, args: list[str]) -> None:
        # Production without collected static files would answer every page with 500: refuse.
        from .checks import static_files_problem

        problem = static_files_problem()
        if problem:
            self.parser.exit(2, f"{problem}\n")
        return super().run(args)


if __name__ == "__main__":
    ServingCommandLineInterface.entrypoint()
