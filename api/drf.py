"""Django REST framework plumbing loaded through settings: the strict JSON parser and the throttle.

(Kept apart from ``api.exceptions``: DRF imports these classes while ``rest_framework.views`` is
still being imported.)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import IO, Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import BaseParser
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle
from rest_framework.utils import json as strict_json

from project import throttling


class CappedObject(dict):
    """A JSON object of more than ``MAX_OBJECT_MEMBERS`` members, as parsed: its first members and
    every member a request body may name (``BODY_KEYS``); ``omitted`` counts the members left out,
    which no serializer knows, so they are reported as a count of unknown keys."""

    omitted = 0


class StrictJSONParser(BaseParser):
    """``application/json`` bodies as UTF-8 JSON; NaN and ±Infinity literals are refused.

    Parsed JSON takes about fifteen times the memory of its text (a 2.4 MB object of 200,000 keys
    is ~35 MB of Python objects) and every request runs in its own thread. So an object keeps at
    most ``MAX_OBJECT_MEMBERS`` members beyond the keys a body may use (``CappedObject``), and
    bodies past ``LARGE_BODY_BYTES`` are parsed ``LARGE_BODY_PARSES`` at a time per process:
    concurrent large bodies cost their bytes while they wait, and little once parsed (README:
    "Limits").
    """

    media_type = "application/json"
    MAX_OBJECT_MEMBERS = 64
    LARGE_BODY_BYTES = 256 * 1024  # a 1,000-row batch is ~150 KB
    LARGE_BODY_PARSES = 1
    _large_parses = threading.BoundedSemaphore(LARGE_BODY_PARSES)

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        # DRF hands parsers the raw stream, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE: apply it here.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise exceptions.ParseError(f"The body is larger than {limit} bytes.")
        if len(raw) <= self.LARGE_BODY_BYTES:
            return self._loads(raw)
        with self._large_parses:
            return self._loads(raw)

    @classmethod
    def _loads(cls, raw: bytes) -> Any:
        try:
            return strict_json.loads(raw.decode("utf-8"), object_pairs_hook=cls._object)
        except UnicodeDecodeError:
            raise exceptions.ParseError("The body is not UTF-8 encoded JSON.") from None
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {_short(str(exc))}.") from None

    @classmethod
    def _object(cls, pairs: list[tuple[str, object]]) -> dict:
        if len(pairs) <= cls.MAX_OBJECT_MEMBERS:
            return dict(pairs)
        from .serializers import BODY_KEYS  # not at import time: DRF loads this module early

        head = pairs[: cls.MAX_OBJECT_MEMBERS]
        kept = CappedObject(head)
        kept.update((key, value) for key, value in pairs[cls.MAX_OBJECT_MEMBERS :] if key in BODY_KEYS)
        kept.omitted = len({key for key, _ in pairs}) - len(kept)
        return kept


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AnonApiThrottle(BaseThrottle):
    """One row of the client's REST budget per request (``project.throttling.rest_rows``, rate
    ``API_THROTTLE_ANON``; empty turns it off); a batch pays for its other rows in the view
    (``charge_rows``). Counted in Redis when there is one, so every process shares the count."""

    wait_seconds: float | None = None

    def allow_request(self, request: Request, view: object) -> bool:
        decision = throttling.rest_rows.hit(self.get_ident(request), cost=1)
        self.wait_seconds = decision.wait
        return decision.allowed

    def wait(self) -> float | None:
        return self.wait_seconds


def charge_rows(request: Request, rows: int) -> None:
    """Charge ``rows`` more rows to the client's REST budget; ``Throttled`` (429) if they do not fit."""
    if rows <= 0:
        return
    decision = throttling.rest_rows.hit(BaseThrottle().get_ident(request), cost=rows)
    if not decision.allowed:
        raise exceptions.Throttled(wait=decision.wait)
