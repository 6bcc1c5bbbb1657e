"""The prediction endpoints as a small ASGI route in front of Django (README: "The request path").

``POST /v2/models/diabetes/infer`` (and ``.../versions/<version>/infer``) and ``POST
/api/v1/predict`` are answered here, on the event loop. Django's ASGI handler costs far more than
a prediction per request: a thread started for each request (``ThreadSensitiveContext``), the
``request_started``/``request_finished`` signals with their sync receivers, and a thread hop for
every ``process_request``/``process_response`` of every middleware. This route runs the code
Django would run for these requests, without the hops:

- the request is Django's own ``ASGIRequest``, built from the same scope and body;
- V2 is answered by its view (``api.v2.model_infer``) itself;
- REST by ``api.rest.PredictApi``'s own parts: the strict JSON parser, the input serializer (DRF
  validation and error detail), the row throttle, the project's DRF exception handler and DRF's
  JSON renderer; the assessments are stored by a writer thread that keeps its database
  connection open, in one hop; their ids are drawn first, so the answer is rendered while they are
  written, and sent only once they are stored;
- the response passes through the same instances of the middleware that set headers on it
  (security, content security policy, common, frame options), in Django's order; a status of 400
  or more is logged as Django logs it, and a bug becomes Django's 500 answer (JSON for the APIs).

Whatever this route would not answer exactly like Django goes to Django untouched (with the body
already read): another method or path, no ``Content-Length``, a REST body over
``REST_INLINE_BODY_BYTES`` (large batches are parsed in Django's worker thread, two at a time, as
before), a content type or ``Accept`` header that DRF would negotiate, a query string, API keys
required for predictions, a redirect to HTTPS, a host that is not allowed.
``tests/api/test_asgi_route.py`` checks that this route and Django answer the same requests with
the same status, headers and body.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import sync_to_async
from csp.middleware import CSPMiddleware
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.handlers.exception import response_for_exception
from django.db import DatabaseError, connection
from django.db.backends.utils import CursorWrapper
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.utils.cache import add_never_cache_headers
from django.utils.log import log_response
from rest_framework import exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings

from ml_engine.models import Assessment, Interface
from ml_engine.registry import active_model
from ml_engine.services import (
    Prediction,
    assessments_build,
    assessments_insert,
    predict,
    predict_many,
)
from project import throttling
from project.asgi_types import Message, Receive, Scope, Send

from . import rest, v2
from .drf import StrictJSONParser
from .exceptions import exception_handler

logger = logging.getLogger(__name__)


V2_INFER = re.compile(rf"/v2/models/{v2.MODEL_NAME}(?:/versions/(?P<version>[^/]+))?/infer")
REST_PREDICT = "/api/v1/predict"
# A person is ~200 bytes; bodies past this are parsed in Django's worker thread (StrictJSONParser
# bounds how many large ones are parsed at once), so no large parse holds up the event loop.
REST_INLINE_BODY_BYTES = 16 * 1024
# The Accept headers for which DRF's negotiation picks its JSON renderer with no parameters.
PLAIN_ACCEPT = frozenset({b"", b"*/*", b"application/json"})
# The middleware this route applies, and those it leaves out because they do nothing to these
# requests (no session, messages, CSRF cookie or login is involved; the views are CSRF exempt).
# A middleware in settings that is in neither set sends every request to Django.
APPLIED = (SecurityMiddleware, CSPMiddleware, CommonMiddleware, XFrameOptionsMiddleware)
INERT = frozenset(
    {
        "project.static.StaticFilesMiddleware",
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "axes.middleware.AxesMiddleware",
    }
)


class NotHere(Exception):
    """This request is Django's to answer."""


def _unused(request: HttpRequest) -> HttpResponse:  # the middleware here never call on
    raise AssertionError("the prediction route calls middleware hooks, never get_response")


class PredictionRoute:
    """ASGI app: answers the prediction endpoints (module docstring); passes everything else to ``app``."""

    def __init__(self, app: Callable, *, django: ASGIHandler):
        self.app = app
        self.django = django  # its send_response writes our responses as it writes its own
        self.middleware = self._middleware()

    @staticmethod
    def _middleware() -> list[Any] | None:
        """Instances of the header-setting middleware, in settings order; None if settings hold one
        this route does not know (then Django answers everything)."""
        chain = []
        for path in settings.MIDDLEWARE:
            cls = next((c for c in APPLIED if f"{c.__module__}.{c.__qualname__}" == path), None)
            if cls is not None:
                chain.append(cls(_unused))
            elif path not in INERT:
                logger.warning("The prediction route is off: it does not know the middleware %s.", path)
                return None
        return chain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._route(scope)
        if answer is None:
            return await self.app(scope, receive, send)
        body = await self._read_body(scope, receive)
        if body is None:  # the client left
            return None
        try:
            response = await answer(scope, body)
        except NotHere:
            return await self.app(scope, _replay(body, receive), send)
        await self.django.send_response(response, send)  # type: ignore[arg-type]  # any ASGI send
        return None

    def _route(self, scope: Scope) -> Callable[[Scope, bytes], Awaitable[HttpResponseBase]] | None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("root_path"):
            return None
        if self.middleware is None or settings.API_REQUIRE_KEY_FOR_PREDICT:
            return None  # keys are Django's to check (README: "Access and roles")
        path = scope.get("path", "")
        if path == REST_PREDICT:
            return self._rest if _plain_rest(scope) else None
        match = V2_INFER.fullmatch(path)
        if match is None:
            return None
        version = match["version"]
        return lambda scope, body: self._v2(scope, body, version)

    @staticmethod
    async def _read_body(scope: Scope, receive: Receive) -> bytes | None:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                return b"".join(chunks)

    # -- one request -------------------------------------------------------------------------------

    def _request(self, scope: Scope, body: bytes) -> ASGIRequest:
        """Django's request for this scope, past the checks the applied middleware make first."""
        try:
            request = ASGIRequest(scope, io.BytesIO(body))
        except Exception:  # a path that is not UTF-8, a body over the limit: Django's answer
            raise NotHere from None
        for middleware in self.middleware:  # type: ignore[union-attr]
            hook = getattr(middleware, "process_request", None)
            try:
                early = hook(request) if hook else None
            except Exception:  # DisallowedHost and the like: Django's answer
                raise NotHere from None
            if early is not None:  # a redirect to HTTPS or to www.
                raise NotHere
        return request

    def _finish(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        """What Django does to a view's response on its way out: the middleware's process_response
        in reverse order, then the log line for an error status."""
        for middleware in reversed(self.middleware):  # type: ignore[arg-type]
            hook = getattr(middleware, "process_response", None)
            if hook is not None:
                response = hook(request, response)
        if response.status_code >= 400:
            log_response(
                "%s: %s",
                response.reason_phrase,
                request.path,
                response=response,  # type: ignore[arg-type]  # only its status is read
                request=request,
                logger=_django,
            )
        return response

    async def _v2(self, scope: Scope, body: bytes, version: str | None) -> HttpResponseBase:
        request = self._request(scope, body)
        try:
            response = await v2.model_infer(request, version=version)
        except Exception as exc:  # a bug: Django's 500 answer and log line (README: "Errors")
            response = response_for_exception(request, exc)
        return self._finish(request, response)

    async def _rest(self, scope: Scope, body: bytes) -> HttpResponseBase:
        if not 0 < len(body) <= REST_INLINE_BODY_BYTES:
            raise NotHere
        request = self._request(scope, body)
        stored: asyncio.Future[None] | None = None
        try:
            response, stored = await self._predict(request, body)
            # The answer is made ready while the writer stores its assessments (their ids are drawn
            # before the write), and is sent only once they are stored.
            finished = self._finish(request, self._render(response))
            await stored
            return finished
        except Exception as exc:
            if stored is not None and not stored.done():
                stored.add_done_callback(_retrieved)  # a bug after the write began: it finishes alone
            handled = exception_handler(exc, {"view": None, "request": request})
            if handled is None:  # a bug: Django's 500 answer and log line
                return self._finish(request, response_for_exception(request, exc))
            return self._finish(request, self._render(handled))

    @staticmethod
    async def _predict(request: ASGIRequest, body: bytes) -> tuple[Response, asyncio.Future[None]]:
        """``PredictApi.post`` with its DRF checks, in DRF's order: throttle, parse, validate; the
        answer, and the write of its assessments, begun."""
        address = request.META.get("REMOTE_ADDR") or ""  # DRF's get_ident with NUM_PROXIES = 0
        decision = await throttling.rest_rows.ahit(address, cost=1)
        if not decision.allowed:
            raise exceptions.Throttled(wait=decision.wait)
        data = rest.validated_input(StrictJSONParser().parse(io.BytesIO(body)))
        if active_model.current is None:  # a process's first prediction loads the model: off the loop
            await sync_to_async(active_model.get, thread_sensitive=True)()
        if "features" in data:
            predictions = [predict(features=data["features"], interface=Interface.REST)]
        else:
            extra = len(data["instances"]) - 1  # a batch of N costs N (README: "Throttles")
            if extra > 0:
                decision = await throttling.rest_rows.ahit(address, cost=extra)
                if not decision.allowed:
                    raise exceptions.Throttled(wait=decision.wait)
            predictions = predict_many(instances=data["instances"], interface=Interface.REST)
        ids, stored = _store(predictions)
        return Response(rest.answer(predictions=predictions, ids=ids, single="features" in data)), stored

    @staticmethod
    def _render(response: Response) -> Response:
        """What DRF's ``finalize_response`` and Django's rendering do to ``PredictApi``'s answers."""
        response.accepted_renderer = _RENDERER
        response.accepted_media_type = _RENDERER.media_type
        response.renderer_context = {}  # type: ignore[attr-defined]  # DRF sets it the same way
        response["Allow"] = _ALLOW
        add_never_cache_headers(response)  # rest.NoStore: health data (README: "Health data")
        return response.render()


_django = logging.getLogger("django.request")
_RENDERER = JSONRenderer()
# PredictApi renders with DRF's default renderers; this route renders as they do while that is JSONRenderer alone.
assert list(api_settings.DEFAULT_RENDERER_CLASSES) == [JSONRenderer]  # type: ignore[comparison-overlap]
_ALLOW = ", ".join(rest.PredictApi().allowed_methods)


# The route's assessments are written by one thread, on one database connection kept open between
# writes. (Django's handler opens and closes a connection per request, in a thread per request;
# closing SQLite's last WAL connection checkpoints the log, tens of milliseconds a request.) Before
# each write the connection is checked: a server that went away, or an SQLite file that was moved
# or replaced, closes it, so the write connects afresh (and fails with a 503 if it cannot); a failed
# write closes it too.
# The writer keeps one cursor on that connection too: making a cursor for each write was about a
# third of a one-row write's time on SQLite.
_writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="assessment-writer")
_opened_file: tuple[int, int] | None = None  # (device, inode) of the SQLite file the writer opened
_cursor: tuple[Any, CursorWrapper] | None = None  # the writer's cursor and the DB-API connection it is on


def _sqlite_file() -> tuple[int, int] | None:
    try:
        stat = os.stat(connection.settings_dict["NAME"])
    except (OSError, TypeError, ValueError):
        return None  # an in-memory database, or no file
    return stat.st_dev, stat.st_ino


def _usable() -> bool:
    if connection.vendor == "sqlite":
        return _sqlite_file() == _opened_file
    return connection.is_usable()


def _writer_cursor() -> CursorWrapper:
    """The writer's cursor, made anew whenever its connection is not the one the cursor is on."""
    global _cursor
    if _cursor is None or _cursor[0] is not connection.connection:
        cursor = connection.cursor()  # connects first when the connection is closed
        _cursor = (connection.connection, cursor)
    return _cursor[1]


def _insert(assessments: list[Assessment]) -> None:
    global _opened_file
    if connection.connection is not None and not _usable():
        connection.close()
    was_open = connection.connection is not None
    try:
        assessments_insert(assessments=assessments, cursor=_writer_cursor())
    except DatabaseError:
        connection.close()
        raise
    if not was_open and connection.vendor == "sqlite":
        _opened_file = _sqlite_file()


def _store(predictions: list[Prediction]) -> tuple[list[str], asyncio.Future[None]]:
    """The public ids of the assessments of ``predictions``, and their write (one INSERT, one hop
    to the writer thread), begun. A database error is the future's (a 503 to the caller), so no
    answer ever carries an id that was not stored."""
    assessments = assessments_build(predictions=predictions, interface=Interface.REST)
    stored = asyncio.get_running_loop().run_in_executor(_writer, _insert, assessments)
    return [str(assessment.public_id) for assessment in assessments], stored


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning("An assessment write failed after its request had failed.")


def close_connection() -> None:
    """Close the writer thread's database connection (tests drop their database afterwards)."""
    _writer.submit(_close).result()


def _close() -> None:
    global _cursor
    _cursor = None
    connection.close()  # looked up in the writer thread: connections are per thread


def _plain_rest(scope: Scope) -> bool:
    """Whether DRF would parse this REST request's body as JSON and answer with its JSON renderer,
    unparameterised, and the body is small enough to parse on the event loop; decided from the
    headers, before any body byte is read (each of these headers given at most once)."""
    if scope.get("query_string"):
        return False
    seen: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or ():
        if name in (b"content-type", b"content-length", b"accept"):
            if name in seen:
                return False
            seen[name] = value
    length = seen.get(b"content-length", b"").strip()
    return (
        seen.get(b"content-type", b"").split(b";", 1)[0].strip().lower() == b"application/json"
        and seen.get(b"accept", b"").strip().lower() in PLAIN_ACCEPT
        and length.isdigit()
        and len(length) <= 6
        and 0 < int(length) <= REST_INLINE_BODY_BYTES
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for Django after this route has read the body: the body once, then the client."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
