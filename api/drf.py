"""Django REST framework plumbing loaded through settings: the strict JSON parser and the throttle.

(Kept apart from ``api.exceptions``: DRF imports these classes while ``rest_framework.views`` is
still being imported.)
"""

from __future__ import annotations

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import BaseParser
from rest_framework.throttling import BaseThrottle
from rest_framework.utils import json as strict_json

from project import throttling


class StrictJSONParser(BaseParser):
    """``application/json`` bodies as UTF-8 JSON; NaN and ±Infinity literals are refused."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        # DRF hands parsers the raw stream, past Django's DATA_UPLOAD_MAX_MEMORY_SIZE: apply it here.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise exceptions.ParseError(f"The body is larger than {limit} bytes.")
        try:
            text = raw.decode("utf-8")
            return strict_json.loads(text)
        except UnicodeDecodeError:
            raise exceptions.ParseError("The body is not UTF-8 encoded JSON.") from None
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {_short(str(exc))}.") from None


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AnonApiThrottle(BaseThrottle):
    """One row of the client's REST budget per request (``project.throttling.rest_rows``, rate
    ``API_THROTTLE_ANON``; empty turns it off); a batch pays for its other rows in the view
    (``charge_rows``). Counted in Redis when there is one, so every process shares the count."""

    wait_seconds: float | None = None

    def allow_request(self, request, view) -> bool:
        decision = throttling.rest_rows.hit(self.get_ident(request), cost=1)
        self.wait_seconds = decision.wait
        return decision.allowed

    def wait(self) -> float | None:
        return self.wait_seconds


def charge_rows(request, rows: int) -> None:
    """Charge ``rows`` more rows to the client's REST budget; ``Throttled`` (429) if they do not fit."""
    if rows <= 0:
        return
    decision = throttling.rest_rows.hit(BaseThrottle().get_ident(request), cost=rows)
    if not decision.allowed:
        raise exceptions.Throttled(wait=decision.wait)
