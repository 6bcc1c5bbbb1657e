"""The monitoring page in headless Debian Chromium at 390 x 844 and 1280 x 900, with 30 days of
realistic data (tests/monitor_seed.py), under the site's real Content-Security-Policy: a staff
member signs in through the admin login, no sideways scrolling, axe-core finds nothing, every plot
has its text. Set SCREENSHOT_DIR to write docs/screenshots/monitor-*.png."""

from __future__ import annotations

import pytest

from tests.browser import axe_violations, page_width_overflow, shot, watch
from tests.monitor_seed import STAFF_PASSWORD, STAFF_USER
from tests.servers import DaphneServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}


@pytest.fixture(scope="module")
def server(module_server_env):
    env = module_server_env
    env.manage("shell", "-c", "from tests.monitor_seed import seed; seed()")
    daphne = DaphneServer(env).start()
    try:
        yield daphne
    finally:
        daphne.stop()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_monitoring_page_fits_and_is_accessible(server, new_page, width):
    page = new_page(bypass_csp=False, viewport=WIDTHS[width], reduced_motion="reduce")
    seen = watch(page)
    page.goto(f"{server.http}/monitor/")
    assert "/admin/login/" in page.url  # not signed in yet
    page.fill("#id_username", STAFF_USER)
    page.fill("#id_password", STAFF_PASSWORD)
    with page.expect_navigation():
        page.click("input[type=submit]")
    assert page.url.endswith("/monitor/")
    for found in seen.values():  # the admin's login page asks for a favicon it does not have
        found.clear()
    page.reload()
    text = page.text_content("main")
    assert "major shift" in text or "moderate shift" in text  # the seeded last week drifts
    assert "Last 7 days:" in text and "Predictions per interface" in text
    assert page.locator("svg[role=img] desc").count() == 3  # bands, risks, calibration
    assert page.locator("table").count() >= 5
    assert "Shadow and canary" in text and "candidate-shadow" in text
    assert page.locator("table.shadow tbody tr").count() == 2  # last 7 and 30 days
    assert page_width_overflow(page) <= 0, f"/monitor/ scrolls sideways at {width}"
    assert axe_violations(page) == [], width
    assert seen["console_errors"] == [] and seen["page_errors"] == []  # nothing refused by the CSP
    assert all(url.startswith(server.http) for url in seen["requests"])
    shot(page, f"monitor-{width}")
