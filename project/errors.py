"""Error answers outside the views: the 500 handler and what a DEBUG error page may show.

README: "Errors". The APIs answer in their own JSON shape even when a bug escapes a view
(``{"errors": {...}}`` under /api/, ``{"error": "..."}`` under /v2/); pages get Django's plain page.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.debug import SafeExceptionReporterFilter

SERVER_ERROR = "The server failed to answer this request; it has been logged."

# scheme://user:password@host -> scheme://user:********@host (redis://:secret@host too).
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/@:\s]*:)(?P<password>[^@\s]+)(?P<tail>@)", re.IGNORECASE)


def api_error_body(path: str, message: str) -> dict | None:
    """The body an API path answers an error with; ``None`` for the HTML pages."""
    if path.startswith("/api/"):
        return {"errors": {"non_field_errors": [message]}}
    if path == "/v2" or path.startswith("/v2/"):
        return {"error": message}
    return None


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: JSON for the APIs, Django's plain page for everything else."""
    body = api_error_body(request.path, SERVER_ERROR)
    if body is not None:
        return JsonResponse(body, status=500)
    return defaults.server_error(request)


class CredentialFilter(SafeExceptionReporterFilter):
    """Django's filter, plus: passwords inside URLs (``REDIS_URL``, ``CHANNEL_LAYERS`` hosts, a
    database URL) are masked wherever a setting holds one."""

    hidden_settings = re.compile(r"API|AUTH|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL", flags=re.I)

    def cleanse_setting(self, key: int | str, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if type(cleansed) is str:  # plain strings only: lazy objects posing as str are left alone
            return _URL_PASSWORD.sub(lambda m: m["head"] + self.cleansed_substitute + m["tail"], cleansed)
        return cleansed
