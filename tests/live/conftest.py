"""Fixtures for the socket tests in one process: Channels' communicator on the project's routes,
closed in teardown whatever the test asserted, a clock for the flood limit, fresh kiosk boards."""

from __future__ import annotations

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from live import boards, ratelimit
from live.routing import websocket_urlpatterns
from tests.samples import TIMEOUT


class Socket(WebsocketCommunicator):
    """A communicator with the two calls most socket tests make: send one frame, read its reply."""

    async def exchange(self, message: dict) -> dict:
        await self.send_json_to(message)
        return await self.receive_json_from(timeout=TIMEOUT)

    async def exchange_text(self, text: str) -> dict:
        await self.send_to(text_data=text)
        return await self.receive_json_from(timeout=TIMEOUT)


class Sockets:
    """Opens communicators and remembers them, so that every one is disconnected at the end."""

    def __init__(self, application) -> None:
        self.application = application
        self.opened: list[Socket] = []

    async def open(
        self, path: str = "/ws/predict/", *, application=None, headers=None, accepted: bool = True
    ) -> Socket:
        """Connect to ``path`` (on the project's routes unless another ASGI ``application`` is
        given) and check the handshake was ``accepted`` (or refused)."""
        socket = Socket(application or self.application, path, headers=headers)
        self.opened.append(socket)
        connected, _ = await socket.connect(timeout=TIMEOUT)
        assert connected is accepted, f"{path}: handshake {'refused' if accepted else 'accepted'}"
        return socket

    async def close_all(self) -> None:
        """Disconnect every socket opened here whose application still runs (a test that closed
        its socket, or saw it closed, has nothing left to release)."""
        opened, self.opened = self.opened, []
        for socket in opened:
            if not socket.future.done():
                await socket.disconnect(timeout=TIMEOUT)


@pytest.fixture
def application():
    """The project's WebSocket routes, as daphne serves them behind the origin check."""
    return URLRouter(websocket_urlpatterns)


@pytest.fixture
def sockets(application):
    """A ``Sockets`` for a test that runs its own event loop; it calls ``close_all`` itself."""
    return Sockets(application)


@pytest.fixture
async def open_socket(application):
    """``await open_socket(path="/ws/predict/", application=None, headers=None, accepted=True)``:
    a connected ``Socket``, disconnected after the test even when an assertion failed."""
    opened = Sockets(application)
    yield opened.open
    await opened.close_all()


@pytest.fixture
def autobahn_close_codes(application):
    """The project's routes behind a server that, like daphne's autobahn, lets an application close
    only with 1000 or 3000-4999 (any other code raises)."""

    async def strict(scope, receive, send):
        async def checked_send(message):
            if message["type"] == "websocket.close" and message.get("code") not in (None, 1000, *range(3000, 5000)):
                raise Exception(f"invalid close code {message['code']}")
            await send(message)

        return await application(scope, receive, checked_send)

    return strict


class Clock:
    """A monotonic clock that only moves when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    """The flood limit's clock (``live.ratelimit.monotonic``), driven by the test: ``clock.now += s``."""
    fake = Clock()
    monkeypatch.setattr(ratelimit, "monotonic", fake)
    return fake


@pytest.fixture
def fresh_boards(monkeypatch, settings):
    """A new in-memory board store and channel layer for this test (none left from another); tiles
    appear at once unless the test sets ``settings.BOARD_DELAY_S``."""
    from channels.layers import channel_layers

    settings.BOARD_DELAY_S = 0

    monkeypatch.setattr(boards, "_store", None)
    channel_layers.backends.clear()
