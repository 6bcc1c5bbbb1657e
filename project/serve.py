"""``python -m project.serve``: daphne's command line, with one protocol option changed.

Daphne leaves autobahn's ``failByDrop`` on, so a WebSocket message over
``--websocket-max-message-size`` makes the server drop the TCP connection without a close frame
(clients see 1006), and an application cannot send 1009 itself (autobahn allows it only 1000 and
3000-4999). With ``failByDrop`` off, autobahn closes such a socket with 1009 "message too big",
as contract §6 promises for frames over 64 KiB. Every daphne flag works unchanged.
"""

from daphne.cli import CommandLineInterface
from daphne.server import Server


class ClosingServer(Server):
    def listen_success(self, port):
        # Called once listening starts; the WebSocket factory exists by then (Server.run).
        self.ws_factory.setProtocolOptions(failByDrop=False)
        super().listen_success(port)


class ClosingCommandLineInterface(CommandLineInterface):
    server_class = ClosingServer


if __name__ == "__main__":
    ClosingCommandLineInterface.entrypoint()
