"""Every page a person sees, in headless Debian Chromium at 390 x 844 and 1280 x 900, against one
real daphne process: no sideways scrolling (from 320 px), axe-core finds nothing, the risk strip
stays on screen while typing, and a stale number is never shown as current.

One Chromium (the module-scoped ``browser`` fixture) and one daphne for the whole module; pages
are reused. Set SCREENSHOT_DIR to write the screenshots that README shows (docs/screenshots/).
"""

from __future__ import annotations

import pytest

from tests.browser import TIMEOUT_MS, axe_violations, open_live_page, page_width_overflow, shot
from tests.servers import DaphneServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WIDTHS = {"phone": {"width": 390, "height": 844}, "desktop": {"width": 1280, "height": 900}}
FIELDS = {
    "pregnancies": "3",
    "glucose": "148",
    "blood_pressure": "72",
    "skin_thickness": "35",
    "insulin": "94",
    "bmi": "33.6",
    "diabetes_pedigree": "0.627",
    "age": "50",
}


@pytest.fixture(scope="module")
def server(module_server_env):
    env = module_server_env
    daphne = DaphneServer(env).start()
    try:
        yield daphne
    finally:
        daphne.stop()


@pytest.fixture(scope="module")
def pages(browser):
    """One page per width, reused by every test of the module."""
    opened = {}
    for name, viewport in WIDTHS.items():
        page = browser.new_page(bypass_csp=True, viewport=viewport, reduced_motion="reduce")
        page.set_default_timeout(TIMEOUT_MS)
        opened[name] = page
    yield opened
    for page in opened.values():
        page.close()


def wait_fresh(page) -> None:
    page.wait_for_selector("#strip-fresh[data-fresh='fresh']", state="attached")


def assert_page_fits_and_is_accessible(page, label: str) -> None:
    assert page_width_overflow(page) <= 0, f"{label} scrolls sideways"
    assert axe_violations(page) == [], label


@pytest.mark.parametrize("width", WIDTHS)
def test_the_live_page_fits_and_is_accessible(server, pages, width):
    page = pages[width]
    open_live_page(page, server)
    assert_page_fits_and_is_accessible(page, f"/ empty at {width}")
    page.click("[data-example]")
    page.wait_for_function("document.querySelector('#strip-value').textContent.includes('%')")
    wait_fresh(page)
    assert "points" in page.text_content(".live-drivers")
    assert_page_fits_and_is_accessible(page, f"/ with an example at {width}")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, f"live-{width}")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_strip_stays_on_screen_while_typing_in_each_field(server, pages, width):
    page = pages[width]
    open_live_page(page, server)
    for key, value in FIELDS.items():
        page.click(f"#id_{key}")
        page.keyboard.type(value, delay=10)
        strip = page.locator("#risk-strip").bounding_box()
        field = page.locator(f"#id_{key}").bounding_box()
        viewport = page.viewport_size
        assert strip["y"] >= 0 and strip["y"] + strip["height"] <= viewport["height"], (key, strip)
        assert strip["x"] >= 0 and strip["x"] + strip["width"] <= viewport["width"], (key, strip)
        # The strip never covers the field being typed into.
        assert field["y"] >= strip["y"] + strip["height"] or field["y"] + field["height"] <= strip["y"], key
    wait_fresh(page)
    assert "%" in page.text_content("#strip-value")
    assert page.get_attribute("#risk-strip", "aria-labelledby") == "strip-title"
    page.focus("#id_bmi")
    shot(page, f"typing-{width}", full_page=False)  # what the person sees while typing


@pytest.mark.parametrize("width", WIDTHS)
def test_the_result_page_fits_and_is_accessible(server, pages, width):
    page = pages[width]
    open_live_page(page, server)
    for key, value in {**FIELDS, "glucose": "250", "age": "110"}.items():
        page.fill(f"#id_{key}", value)
    with page.expect_navigation():
        page.click("button[type=submit]")
    text = page.text_content("main")
    assert "Please see a clinician" in text and "does not mean that age lowers" in text
    assert "points" in text and "log-odds" not in text
    assert_page_fits_and_is_accessible(page, f"result at {width}")
    shot(page, f"result-{width}")


def test_a_refused_form_lists_its_problems_accessibly(server, pages):
    page = pages["phone"]
    open_live_page(page, server)
    page.fill("#id_glucose", "abc")
    page.fill("#id_insulin", "1,000")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page.text_content("#error-summary-title").strip() == "Please check 2 things"
    page.type("#id_age", "50", delay=10)  # a risk without the refused values: marked as not up to date
    page.wait_for_selector("#strip-fresh[data-fresh='stale']")
    page.click("#error-summary a[href='#id_glucose']")
    assert page.evaluate("document.activeElement.id") == "id_glucose"
    assert page.input_value("#id_insulin") == "1,000"  # what was typed is kept
    assert page.locator("[data-field='insulin'] .error:visible").count() == 1  # said once, not twice
    assert_page_fits_and_is_accessible(page, "refused form")
    shot(page, "refused-phone")


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", ["/model/", "/kiosk/lobby/", "/api/docs/"])
def test_the_other_pages_fit_and_are_accessible(server, pages, width, path):
    page = pages[width]
    page.goto(f"{server.http}{path}")
    if path == "/api/docs/":
        page.wait_for_selector(".swagger-ui .opblock")
    if path.startswith("/kiosk/"):
        page.wait_for_selector("#kiosk-connection[data-state='open']")
    assert_page_fits_and_is_accessible(page, f"{path} at {width}")
    name = {"/model/": "model-card", "/kiosk/lobby/": "kiosk", "/api/docs/": "api-docs"}[path]
    shot(page, f"{name}-{width}")


def test_nothing_scrolls_sideways_at_320_px(server, new_page):
    # The kiosk at lobby and tablet sizes, with tiles: tests/live/test_kiosk_screens_browser.py.
    page = new_page(viewport={"width": 320, "height": 640})
    for path in ("/", "/?board=lobby", "/model/", "/kiosk/", "/api/docs/"):
        page.goto(f"{server.http}{path}")
        if path == "/api/docs/":
            page.wait_for_selector(".swagger-ui .opblock")
        assert page_width_overflow(page) <= 0, path
    page.goto(f"{server.http}/")
    page.fill("#id_glucose", "148")
    with page.expect_navigation():
        page.click("button[type=submit]")
    assert page_width_overflow(page) <= 0, "result page"


def test_typing_helpers_comma_units_bmi_and_warnings(server, pages):
    page = pages["phone"]
    open_live_page(page, server)
    # A decimal comma is a decimal point; an unclear comma is refused in words.
    page.type("#id_bmi", "33,6", delay=10)
    wait_fresh(page)
    with_comma = page.text_content("#strip-value")
    page.fill("#id_bmi", "")
    page.type("#id_bmi", "33.6", delay=10)
    wait_fresh(page)
    assert page.text_content("#strip-value") == with_comma
    page.fill("#id_insulin", "")
    page.type("#id_insulin", "1,000", delay=10)
    page.wait_for_selector("#id_insulin-live-error:not([hidden])")
    assert "comma" in page.text_content("#id_insulin-live-error")
    page.fill("#id_insulin", "")
    page.dispatch_event("#id_insulin", "input")
    page.wait_for_selector("#id_insulin-live-error", state="hidden")

    # Glucose in mmol/L gives the risk of the same glucose in mg/dL.
    page.type("#id_glucose", "147.7", delay=10)
    wait_fresh(page)
    in_mg = page.text_content("#strip-value")
    page.select_option("#id_glucose_unit", "mmol/L")
    page.fill("#id_glucose", "")
    page.type("#id_glucose", "8,2", delay=10)
    wait_fresh(page)
    assert page.text_content("#strip-value") == in_mg
    page.select_option("#id_glucose_unit", "mg/dL")

    # A diagnostic glucose: "see a clinician" while typing.
    page.fill("#id_glucose", "")
    page.type("#id_glucose", "250", delay=10)
    page.wait_for_selector("#live-clinical li")
    assert "diagnose diabetes" in page.text_content("#live-clinical")
    # ... also under the field and in the strip, which a phone shows while typing.
    assert "diagnose diabetes" in page.text_content("#id_glucose_clinical")
    assert page.is_visible("#strip-clinical")

    # BMI from height and weight, in pounds and inches too.
    page.click("#bmi-helper summary")
    page.check("input[name='bmi-units'][value='imperial']")
    page.fill("#bmi-height-ft", "5")
    page.fill("#bmi-height-in", "5")
    page.fill("#bmi-weight-lb", "150")
    page.wait_for_selector("#bmi-use:not([disabled])")
    assert "25" in page.text_content("#bmi-result")  # 150 lb at 5 ft 5 in is a BMI of 25.0
    page.click("#bmi-use")
    assert page.input_value("#id_bmi") == "25"
    assert_page_fits_and_is_accessible(page, "/ with helpers open")
    shot(page, "helpers-phone")


def test_a_stale_number_is_marked_until_the_form_is_answered(server, pages):
    page = pages["phone"]
    open_live_page(page, server)
    page.type("#id_glucose", "90", delay=20)
    wait_fresh(page)
    assert page.text_content("#strip-fresh") == "" and page.text_content("#live-stale") == ""

    # 900 is refused: the risk for 90 stays on screen, marked as not up to date, in words.
    page.type("#id_glucose", "0", delay=20)
    page.wait_for_selector("#strip-fresh[data-fresh='stale']")
    assert page.text_content("#strip-fresh") == "not up to date"
    assert "Plasma glucose (2-h OGTT) is not a value the model can use yet" in page.text_content("#live-stale")
    assert page.get_attribute("#live-stale", "role") == "status"  # spoken once, politely
    assert "is-stale" in page.get_attribute("#risk-strip", "class")
    assert_page_fits_and_is_accessible(page, "/ with a stale mark")
    shot(page, "stale-phone")
    page.keyboard.press("Backspace")
    wait_fresh(page)
    assert page.text_content("#live-stale") == ""

    # The server goes away: marked stale while reconnecting; back, the page resends and it clears.
    server.stop()
    page.wait_for_selector("#strip-fresh[data-fresh='stale']")
    assert "connection to the server is lost" in page.text_content("#live-stale")
    assert page.text_content("#strip-status") == "reconnecting…"
    server.start()
    page.wait_for_selector("#live-status[data-state='connected']", timeout=60_000)
    wait_fresh(page)
    assert page.text_content("#live-stale") == ""
    assert page.input_value("#id_glucose") == "90"
