"""The REST API's error shape: ``{"errors": {"<key>": ["message", ...]}}`` for every error.

Field errors are keyed by the field's path in the body (``features.glucose``, ``instances[3].age``,
``outcome``); everything else (bad JSON, wrong content type, throttling, unknown id, no model) is
under ``non_field_errors``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from ml_engine.registry import ModelUnavailable
from ml_engine.schema import FeatureValidationError

NON_FIELD = "non_field_errors"
# Seconds a client is asked to wait when the database or the model is down (Retry-After).
RETRY_AFTER_SECONDS = 5

logger = logging.getLogger(__name__)


def _flatten(detail: Any, path: str = "") -> Iterator[tuple[str, list[str]]]:
    """DRF's nested error detail as ``(path, messages)`` pairs: ``features.glucose``, ``instances[3]``."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key in (NON_FIELD, api_settings.NON_FIELD_ERRORS_KEY):
                child = path
            elif isinstance(key, int):
                child = f"{path}[{key}]"
            else:
                child = f"{path}.{key}" if path else str(key)
            yield from _flatten(value, child)
    elif isinstance(detail, list) and detail and all(isinstance(item, dict | list) for item in detail):
        for i, item in enumerate(detail):
            if item:
                yield from _flatten(item, f"{path}[{i}]")
    elif isinstance(detail, list):
        yield path or NON_FIELD, [str(item) for item in detail]
    else:
        yield path or NON_FIELD, [str(detail)]


def errors_body(detail: Any) -> dict[str, dict[str, list[str]]]:
    errors: dict[str, list[str]] = {}
    for key, messages in _flatten(detail):
        errors.setdefault(key, []).extend(messages)
    return {"errors": errors or {NON_FIELD: ["Invalid request."]}}


def exception_handler(exc: Exception, context: dict) -> Response | None:
    """Give every error raised in a REST view the contract's shape (and never a 5xx for input)."""
    if isinstance(exc, FeatureValidationError):
        return Response(errors_body(exc.errors), status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ModelUnavailable):
        return _unavailable(str(exc))
    if isinstance(exc, OperationalError | InterfaceError):
        # The database is down or unreachable: the client may retry; no traceback per request.
        logger.warning("Database unavailable: %s", exc)
        return _unavailable("The database is unavailable; try again shortly.")
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a bug: Django's 500 handling (and logging) applies
    if isinstance(exc, exceptions.ValidationError):
        response.data = errors_body(exc.detail)
    elif isinstance(exc, exceptions.UnsupportedMediaType):
        response.status_code = status.HTTP_400_BAD_REQUEST
        response.data = errors_body(f"{exc.detail} Send the body as application/json.")
    elif isinstance(exc, exceptions.Throttled):
        wait = exc.wait  # type: ignore[attr-defined]  # set by Throttled.__init__; its stub leaves it out
        message = "Too many requests." + (f" Try again in {int(wait + 0.999)} s." if wait is not None else "")
        response.data = errors_body(message)
    elif isinstance(exc, Http404 | exceptions.NotFound):
        response.data = errors_body(str(getattr(exc, "detail", "")) or "Not found.")
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        response.data = errors_body(detail)
    return response


def _unavailable(message: str) -> Response:
    response = Response(errors_body(message), status=status.HTTP_503_SERVICE_UNAVAILABLE)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
