"""``python -m project.serve``: daphne's command line, with a few protocol details changed.

Daphne leaves autobahn's ``failByDrop`` on, so a WebSocket message over
``--websocket-max-message-size`` makes the server drop the TCP connection without a close frame
(clients see 1006). With ``failByDrop`` off, autobahn closes such a socket with 1009 "message too
big", as contract §6 promises for frames over 64 KiB.

Autobahn also lets an application close only with 1000 or 3000-4999 (``sendClose`` raises for
anything else), although RFC 6455 (§7.4.1) gives servers 1008 "policy violation", 1009 "message
too big" and 1011 "internal error". The protocol below sends those three as they are; every other
code goes through autobahn's check unchanged.

Daphne reads a WebSocket as fast as the client writes and queues every frame for the application
without limit, so one client flooding a socket costs the whole process (parsing, memory) and
delays every other socket. The protocol below stops reading from a socket while its application
has more than ``READ_HIGH_WATER`` frames waiting and resumes below ``READ_LOW_WATER``: a flood is
slowed to the pace its consumer handles it, in kernel buffers, and other sockets keep being read.
Reads are also capped at ``READ_CHUNK`` bytes, so parsing one socket's backlog never holds the
event loop for long. Every daphne flag works unchanged.
"""

from daphne.cli import CommandLineInterface
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

from project import http_limits

SERVER_CLOSE_CODES = frozenset({1008, 1009, 1011})
READ_HIGH_WATER = 256  # frames waiting for the application
READ_LOW_WATER = 32
READ_CHUNK = 8192  # bytes per read from one WebSocket (twisted's default is 64 KiB)
RESUME_CHECK_SECONDS = 0.005


class ClosingWebSocketProtocol(WebSocketProtocol):
    _reading_paused = False

    def onOpen(self):
        self.transport.bufferSize = READ_CHUNK
        super().onOpen()

    def onMessage(self, payload, isBinary):
        super().onMessage(payload, isBinary)
        queue = getattr(self, "application_queue", None)
        if queue is not None and not self._reading_paused and queue.qsize() >= READ_HIGH_WATER:
            self._reading_paused = True
            self.transport.pauseProducing()
            self._resume_when_drained()

    def _resume_when_drained(self):
        from twisted.internet import reactor

        if self.state == self.STATE_CLOSED:
            return
        if self.application_queue.qsize() > READ_LOW_WATER:
            reactor.callLater(RESUME_CHECK_SECONDS, self._resume_when_drained)
            return
        self._reading_paused = False
        self.transport.resumeProducing()

    def serverClose(self, code=None):
        if code in SERVER_CLOSE_CODES:
            self.sendCloseFrame(code=code)
        else:
            super().serverClose(code)


class ClosingServer(Server):
    def listen_success(self, port):
        # Called once listening starts; the WebSocket factory exists by then (Server.run).
        self.ws_factory.setProtocolOptions(failByDrop=False)
        self.ws_factory.protocol = ClosingWebSocketProtocol
        http_limits.install(self)  # body size, slow clients, file descriptors (project/http_limits.py)
        super().listen_success(port)


class ClosingCommandLineInterface(CommandLineInterface):
    server_class = ClosingServer


if __name__ == "__main__":
    ClosingCommandLineInterface.entrypoint()
