"""Headless Debian Chromium for page tests, driven by Playwright (never a downloaded browser).

Plain sync helpers: Playwright's sync API must not run inside an asyncio loop.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import IN_CI

CHROMIUM = "/usr/bin/chromium"
# Pages in the behaviour tests are opened with bypass_csp=True: Playwright's wait_for_function
# evaluates its predicate with eval, which the site's Content-Security-Policy forbids. The pages
# themselves are checked under the real policy in tests/security/test_access_csp_browser.py.
# No background traffic: the machine has no network beyond loopback, and tests check that no
# request leaves 127.0.0.1.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
]
TIMEOUT_MS = 30_000  # generous: the test machine is shared
# Set to keep the screenshots the tests take (README: "The person's pages").
SCREENSHOT_DIR = os.environ.get("SCREENSHOT_DIR")


def require_chromium() -> None:
    if not (Path(CHROMIUM).exists() and shutil.which(CHROMIUM)):
        if IN_CI:
            pytest.fail(f"{CHROMIUM} is required in CI (.ci/run installs chromium)")
        pytest.skip(f"SKIPPED LOUDLY: {CHROMIUM} is not installed; `apt-get install chromium` to run this")
    pytest.importorskip("playwright.sync_api")


def watch(page, seen: dict | None = None) -> dict:
    """Record every request, console error and page error of ``page`` (into ``seen`` if given)."""
    if seen is None:
        seen = {"requests": [], "console_errors": [], "page_errors": []}
    page.on("request", lambda request: seen["requests"].append(request.url))
    page.on("websocket", lambda socket: seen["requests"].append(socket.url))
    page.on("console", lambda message: seen["console_errors"].append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: seen["page_errors"].append(str(error)))
    return seen


def axe_violations(page) -> list[str]:
    """axe-core's violations on ``page`` (every rule axe runs by default: WCAG 2.x A/AA and best
    practices), one line each. axe comes from a pinned PyPI package and is evaluated by the test
    through the DevTools protocol: pages never load it, and a Content-Security-Policy does not apply."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:5]}"
        for v in results.response["violations"]
    ]


def page_width_overflow(page) -> int:
    """How many CSS pixels the page is wider than its viewport (0 when nothing scrolls sideways)."""
    return page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth) - window.innerWidth"
    )


def shot(page, name: str, *, full_page: bool = True) -> None:
    """Save ``page`` as SCREENSHOT_DIR/<name>.png when SCREENSHOT_DIR is set; else do nothing."""
    if SCREENSHOT_DIR:
        Path(SCREENSHOT_DIR).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOT_DIR) / f"{name}.png"), full_page=full_page)


def open_live_page(page, server, query: str = "", *, share: bool = False) -> None:
    """Open the live page of ``server`` (a DaphneServer; ``query`` such as "?board=lobby") and
    wait until its socket is connected; with ``share``, tick the box that shares on the board
    the query names, as the person would, and wait until the server said it is shared."""
    page.goto(f"{server.http}/{query}")
    page.wait_for_selector("#live-status[data-state='connected']")
    if share:
        page.check("#share-on-board")
        page.wait_for_selector("#share-status:has-text('Shared')")


def open_kiosk_page(page, server, board: str = "") -> None:
    """Open the kiosk page of ``server`` (the default board unless ``board`` is named) and wait
    until its socket is open."""
    page.goto(f"{server.http}/kiosk/{board}/" if board else f"{server.http}/kiosk/")
    page.wait_for_selector("#kiosk-connection[data-state='open']")
