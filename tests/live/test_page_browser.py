"""The live page in headless Debian Chromium (Playwright), against a real daphne process.

Plain sync functions: Playwright's sync API must not run inside an asyncio loop.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.browser import TIMEOUT_MS, open_live_page, shot, watch
from tests.servers import daphne_servers

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(module_server_env):
    """One daphne for the module (a test that stops it starts it again on the same port)."""
    with daphne_servers(module_server_env) as [server]:
        yield server


@pytest.fixture
def browser_page(server, new_page):
    page = new_page(viewport={"width": 1100, "height": 1000})
    return server, page, watch(page)


def test_typing_updates_the_risk_live_without_submitting(browser_page):
    server, page, seen = browser_page
    open_live_page(page, server)
    assert page.is_visible("#live-panel")
    assert page.get_attribute("#live-risk", "aria-live") == "polite"
    assert page.text_content("#live-risk-value").strip() == "–"
    shot(page, "01-empty")

    page.type("#id_glucose", "148", delay=50)
    page.wait_for_function("document.querySelector('#live-risk-value').textContent.includes('%')")
    first = page.text_content("#live-risk-value")
    assert page.text_content("#live-band") in ("low", "moderate", "high")

    page.type("#id_age", "50", delay=50)
    page.type("#id_bmi", "33.6", delay=50)
    page.wait_for_function(
        "first => document.querySelector('#live-risk-value').textContent !== first", arg=first, timeout=TIMEOUT_MS
    )
    # Every contribution bar is filled in, and the fields not given are listed as estimated.
    assert all(n.strip() != "–" for n in page.locator("[data-contribution] .num").all_text_contents())
    assert "Triceps skin-fold thickness" in page.text_content("#live-imputed")

    # Out of the range the model was trained on: a warning in words.
    page.fill("#id_insulin", "")
    page.type("#id_insulin", "1400", delay=50)
    page.wait_for_selector("#live-warnings li")
    assert "the model was trained on values from" in page.text_content("#live-warnings")

    # A value the schema refuses: the error shows next to the field, and what was typed stays.
    page.type("#id_pregnancies", "99", delay=50)
    page.wait_for_selector("#id_pregnancies-live-error:not([hidden])")
    assert "Pregnancies must be a number from 0 to 30" in page.text_content("#id_pregnancies-live-error")
    assert page.input_value("#id_pregnancies") == "99"
    shot(page, "02-typed")

    page.fill("#id_pregnancies", "")
    page.type("#id_pregnancies", "2", delay=50)
    page.wait_for_selector("#id_pregnancies-live-error", state="hidden")

    assert urlparse(page.url).path == "/", "typing must not navigate"
    assert seen["console_errors"] == [] and seen["page_errors"] == [], seen
    assert seen["requests"] and all(urlparse(url).hostname == "127.0.0.1" for url in seen["requests"]), seen["requests"]


def test_the_submit_button_still_leads_to_the_result_page(browser_page):
    server, page, seen = browser_page
    open_live_page(page, server)
    page.type("#id_glucose", "148", delay=20)
    page.wait_for_function("document.querySelector('#live-risk-value').textContent.includes('%')")
    live_risk = page.text_content("#live-risk-value").strip()
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert urlparse(page.url).path == "/predict/"
    assert page.text_content(".risk-value").strip() == live_risk  # the same model and rounding
    assert seen["console_errors"] == [] and seen["page_errors"] == []
    assert all(urlparse(url).hostname == "127.0.0.1" for url in seen["requests"])


def test_the_page_reconnects_and_resends_the_state(browser_page):
    server, page, seen = browser_page
    open_live_page(page, server)
    page.type("#id_glucose", "160", delay=20)
    page.wait_for_function("document.querySelector('#live-risk-value').textContent.includes('%')")
    before = page.text_content("#live-risk-value")

    server.stop()
    page.wait_for_selector("#live-status[data-state='reconnecting']")
    shot(page, "03-reconnecting")
    seen["console_errors"].clear()  # Chromium logs each refused reconnection attempt as an error
    server.start()  # same port: the page reconnects by itself
    page.wait_for_selector("#live-status[data-state='connected']", timeout=60_000)
    page.type("#id_age", "45", delay=20)
    page.wait_for_function(
        "before => document.querySelector('#live-risk-value').textContent !== before", arg=before, timeout=TIMEOUT_MS
    )
    assert page.input_value("#id_glucose") == "160"
    assert seen["page_errors"] == []


def test_without_javascript_the_page_is_the_plain_form(server, new_page):
    page = new_page(java_script_enabled=False)
    page.goto(f"{server.http}/")
    assert not page.is_visible("#live-panel") and not page.is_visible("#risk-strip")
    page.fill("#id_glucose", "148")
    page.fill("#id_bmi", "33,6")  # a decimal comma, read as a point by the form too
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert urlparse(page.url).path == "/predict/"
    assert "%" in page.text_content(".risk-value")
    assert "33.6 kg/m²" in page.text_content("main")
