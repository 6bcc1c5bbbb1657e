"""ASGI's callable shapes, for annotating the project's middlewares and socket applications.

Plain dictionaries rather than asgiref's per-event TypedDicts: the middlewares pass events through
untouched, and the consumers build a few event kinds whose optional keys those TypedDicts mark as
required.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
