"""Start-up checks of the server process (README: "Serving by hand").

In production static files are served from ``STATIC_ROOT`` through the manifest that
``collectstatic`` writes; without it every page would answer 500, so the server refuses to start
and says what to run instead.
"""

from __future__ import annotations

import os
from pathlib import Path


def static_files_problem() -> str | None:
    """Why production cannot serve its pages, or None when it can (or when DEBUG is on)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    from django.conf import settings

    if settings.DEBUG:
        return None  # development serves static files straight from the app folders
    manifest = Path(settings.STATIC_ROOT) / "staticfiles.json"
    if manifest.is_file():
        return None
    return (
        f"Static files were never collected (no {manifest.name} in STATIC_ROOT {settings.STATIC_ROOT}), so every "
        "page would fail. Run `python manage.py collectstatic --no-input` first, then start the server again."
    )
