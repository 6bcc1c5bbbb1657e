"""Operations endpoints: liveness, readiness and Prometheus metrics (README: "Operations").

``/readyz`` is async: the three checks run concurrently, the database and model checks in a
worker thread, each with a short timeout, so a hung dependency never blocks the event loop.

Operations data is for operators (README: "Access and roles"): ``/metrics`` and the details of
``/readyz`` need the bearer token ``DJANGO_METRICS_TOKEN`` or an address in
``DJANGO_METRICS_ALLOW`` (staff sessions also see the readiness details); with DEBUG on they are
open. Check details never carry host names, ports or paths: failures name the exception type,
and the full error goes to the server log.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import re
import secrets
from collections.abc import Awaitable
from typing import TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from ml_engine import monitoring
from ml_engine.registry import ModelUnavailable, active_model

logger = logging.getLogger(__name__)

CHECK_TIMEOUT = 1.0  # seconds per readiness check
OK = "ok"
# What could locate infrastructure in a message: URLs, host:port pairs, IP addresses, file paths.
_LOCATION = re.compile(
    r"[a-z][a-z0-9+.-]*://\S+|\[[0-9a-f:]+\](?::\d+)?|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"
    r"|\b[\w-]+(?:\.[\w-]+)*:\d{2,5}\b|(?:/[\w.@+-]+){2,}/?",
    re.IGNORECASE,
)


def _scrub(text: str) -> str:
    return _LOCATION.sub("…", text)


def _failure(exc: BaseException, what: str) -> str:
    """A check's failure for the body: the exception type only (its text may name hosts)."""
    logger.warning("readiness: %s failed: %s: %s", what, type(exc).__name__, exc)
    return f"{type(exc).__name__} (details in the server log)"


def _bearer_token_ok(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    if not expected:
        return False
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


def _address_allowed(request: HttpRequest) -> bool:
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    return any(address in network for network in settings.METRICS_ALLOW)


def is_operator(request: HttpRequest) -> bool:
    """The bearer token, an allowlisted address, or a development server (DEBUG)."""
    return settings.DEBUG or _bearer_token_ok(request) or _address_allowed(request)


def _forbidden() -> JsonResponse:
    return JsonResponse(
        {"status": "error", "error": "Operations data needs the operator's bearer token (DJANGO_METRICS_TOKEN)."},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="operations"'},
    )


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the process runs: it checks nothing else on purpose."""
    return JsonResponse({"status": "ok"})


def _model_check() -> str:
    try:
        served = active_model.get()
    except ModelUnavailable as exc:
        return _scrub(str(exc))
    except Exception as exc:  # e.g. the registry's query failing: not ready, never a 500
        return _failure(exc, "the model check")
    # Serving an older version because the active one failed to load is ready, but worth seeing.
    return OK if active_model.error is None else _scrub(f"ok (serving {served.version}; {active_model.error})")


def _database_check() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return OK


def _model_and_database() -> tuple[str, str]:
    try:
        database = _database_check()
    except Exception as exc:  # any driver error means "not ready", never a 500
        return "not checked: the database does not answer", _failure(exc, "the database")
    return _model_check(), database


async def _channel_layer_check() -> str:
    layer = get_channel_layer()
    if layer is None:
        return "no channel layer is configured (CHANNEL_LAYERS)"
    channel = await layer.new_channel()
    token = secrets.token_hex(8)
    await layer.send(channel, {"type": "readyz.ping", "token": token})
    message = await layer.receive(channel)
    return OK if message.get("token") == token else "the channel layer returned a different message"


T = TypeVar("T")


async def _with_timeout(awaitable: Awaitable[T], what: str) -> T | str:
    """What ``awaitable`` returns within CHECK_TIMEOUT, else why not."""
    try:
        return await asyncio.wait_for(awaitable, CHECK_TIMEOUT)
    except TimeoutError:
        return f"{what} did not answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:  # a dependency failing is the answer, not an error of this view
        return _failure(exc, what)


async def readyz(request: HttpRequest) -> JsonResponse:
    """200 when a model is loaded and the database and the channel layer answer; else 503. The
    public body is only ``{"status": ...}``; operators and staff also get the checks and version."""
    if request.method not in ("GET", "HEAD"):
        return JsonResponse({"status": "error", "error": "Use GET."}, status=405, headers={"Allow": "GET, HEAD"})
    sync_result, channel_layer = await asyncio.gather(
        _with_timeout(sync_to_async(_model_and_database)(), "the database"),
        _with_timeout(_channel_layer_check(), "the channel layer"),
    )
    if isinstance(sync_result, tuple):
        model, database = sync_result
    else:
        model, database = "not checked: the database does not answer", sync_result
    checks: dict[str, str] = {"model": model, "database": database, "channel_layer": channel_layer}
    ready = all(value == OK or value.startswith("ok ") for value in checks.values())
    body: dict[str, object] = {"status": "ok" if ready else "unavailable"}
    if is_operator(request) or await _is_staff(request):
        body["checks"] = checks
        if active_model.current is not None:
            body["model_version"] = active_model.current.version
        plan = active_model.plan
        if plan.shadow_version or plan.canary_version:
            # README: "Model registry": what serves beside the active version here, and why not if not.
            body["serving_plan"] = {
                "shadow": plan.shadow.version if plan.shadow else None,
                "canary": plan.canary.version if plan.canary else None,
                "canary_share": plan.canary_share,
                "errors": [_scrub(error) for error in plan.errors],
            }
    return JsonResponse(body, status=200 if ready else 503, headers={"Cache-Control": "no-store"})


async def _is_staff(request: HttpRequest) -> bool:
    user = await request.auser() if hasattr(request, "auser") else None
    return bool(user is not None and user.is_authenticated and user.is_staff)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text: predictions by interface, latency histograms, open WebSockets, active model.
    Operators only (bearer token or allowlisted address; open with DEBUG)."""
    if not is_operator(request):
        return _forbidden()
    try:  # the drift gauges: cached, at most one round of bounded queries a minute (README: "Monitoring")
        monitoring.update_gauges(monitoring.cached_report())
    except Exception:  # a database outage (or a bug there) must not cost the process metrics
        logger.warning("The drift gauges could not be computed; /metrics shows their last values.", exc_info=True)
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
