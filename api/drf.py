"""Django REST framework plumbing loaded through settings: the strict JSON parser and the throttle.

(Kept apart from ``api.exceptions``: DRF imports these classes while ``rest_framework.views`` is
still being imported.)
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.parsers import BaseParser
from rest_framework.throttling import AnonRateThrottle


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; send finite numbers only")


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
            return json.loads(text, parse_constant=_reject_constant)
        except UnicodeDecodeError:
            raise exceptions.ParseError("The body is not UTF-8 encoded JSON.") from None
        except (ValueError, RecursionError) as exc:
            raise exceptions.ParseError(f"The body is not valid JSON: {_short(str(exc))}.") from None


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


class AnonApiThrottle(AnonRateThrottle):
    """DRF's anonymous throttle, reading the rate when a request comes (API_THROTTLE_ANON; empty
    turns throttling off) rather than once at import, so a settings change takes effect."""

    def get_rate(self) -> str | None:
        rates = getattr(settings, "REST_FRAMEWORK", {}).get("DEFAULT_THROTTLE_RATES", {})
        return rates.get(self.scope) or None
