"""Operations endpoints (contract §8): liveness, readiness and Prometheus metrics.

``/readyz`` is async: the three checks run concurrently, the database and model checks in a
worker thread, each with a short timeout, so a hung dependency never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import secrets

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from ml_engine.registry import ModelUnavailable, active_model

CHECK_TIMEOUT = 1.0  # seconds per readiness check
OK = "ok"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 while the process runs: it checks nothing else on purpose."""
    return JsonResponse({"status": "ok"})


def _model_check() -> str:
    try:
        served = active_model.get()
    except ModelUnavailable as exc:
        return str(exc)
    except Exception as exc:  # e.g. the registry's query failing: not ready, never a 500
        return f"{type(exc).__name__}: {exc}"
    # Serving an older version because the active one failed to load is ready, but worth seeing.
    return OK if active_model.error is None else f"ok (serving {served.version}; {active_model.error})"


def _database_check() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return OK


def _model_and_database() -> tuple[str, str]:
    try:
        database = _database_check()
    except Exception as exc:  # any driver error means "not ready", never a 500
        return "not checked: the database does not answer", f"{type(exc).__name__}: {exc}"
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


async def _with_timeout(awaitable, what: str) -> str | tuple[str, str]:
    try:
        return await asyncio.wait_for(awaitable, CHECK_TIMEOUT)
    except TimeoutError:
        return f"{what} did not answer within {CHECK_TIMEOUT:g} s"
    except Exception as exc:  # a dependency failing is the answer, not an error of this view
        return f"{type(exc).__name__}: {exc}"


async def readyz(request: HttpRequest) -> JsonResponse:
    """200 when a model is loaded and the database and the channel layer answer; else 503 with why."""
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
    checks = {"model": model, "database": database, "channel_layer": channel_layer}
    ready = all(value == OK or value.startswith("ok ") for value in checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    if active_model.current is not None:
        body["model_version"] = active_model.current.version
    return JsonResponse(body, status=200 if ready else 503)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text: predictions by interface, latency histograms, open WebSockets, active model."""
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
