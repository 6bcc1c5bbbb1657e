"""WhiteNoise as an async-capable middleware, so a request that is not for a static file passes
straight through on the event loop.

WhiteNoise's middleware is sync-only: Django would run every request (REST, V2, pages) through a
thread and back to reach it. Here only a request for a static file leaves the event loop (WhiteNoise
looks the file up and builds the response in a worker thread); everything else is awaited directly.
README: "Serving by hand".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponseBase
from whitenoise.middleware import WhiteNoiseMiddleware


class StaticFilesMiddleware(WhiteNoiseMiddleware):
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any] | None = None) -> None:
        super().__init__(get_response)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        path = request.path_info
        if path.startswith(self.static_prefix):
            if self.autorefresh:  # DEBUG: looked up on disk each time
                static_file = await sync_to_async(self.find_file, thread_sensitive=False)(path)
            else:  # production: an index built at start
                static_file = self.files.get(path)
            if static_file is not None:
                return await sync_to_async(self.serve, thread_sensitive=False)(static_file, request)
        return await self.get_response(request)
