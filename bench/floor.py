"""The floor under the keystroke benchmark: ``python -m project.serve bench.floor:application``.

An ASGI application that does the least any application behind the live socket must do: it
accepts the socket, reads each text frame's ``seq`` and sends back a prediction reply that this
project's server gave earlier in the same run (``FLOOR_REPLY``, the same bytes but for the
``seq``). No validation, no model, no bookkeeping. Measured like the live socket (bench/live.py),
its keystroke ÷ ping is what daphne, autobahn and the client cost for a frame and its reply
beyond a ping and its pong: no application behind ``project.serve`` can do better.
"""

from __future__ import annotations

import os

import orjson

from project.asgi_types import Receive, Scope, Send

REPLY_ENVIRONMENT = "FLOOR_REPLY"


async def application(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        return  # lifespan and HTTP: nothing here
    reply = orjson.loads(os.environ[REPLY_ENVIRONMENT])
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        reply["seq"] = orjson.loads(message["text"])["seq"]
        await send({"type": "websocket.send", "text": orjson.dumps(reply).decode()})
