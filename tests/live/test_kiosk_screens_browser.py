"""The kiosk as a clinic puts it up, in headless Debian Chromium against a real daphne process: a
1920 x 1080 lobby screen and a portrait tablet, with tiles and empty, and the page behind its code
on a phone before and after sharing. Text sizes, order, rounding and axe-core are checked; set
SCREENSHOT_DIR to keep the pictures (docs/screenshots/, README: "The person's pages")."""

from __future__ import annotations

import contextlib
import re

import pytest

from tests.browser import axe_violations, open_kiosk_page, open_live_page, page_width_overflow, shot
from tests.samples import PERSON
from tests.servers import DaphneServer, ask, share

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PUBLIC_URL = "https://risk.example.org"  # only encoded in the code: nothing is fetched from it
LOBBY = {"width": 1920, "height": 1080}
TABLET = {"width": 800, "height": 1280}
PHONE = {"width": 390, "height": 844}
CROWD = 48  # people sharing at once in the crowded picture
# Twelve people sharing, from low to high risk.
SHARED = [
    {**PERSON, "glucose": glucose, "bmi": bmi, "age": age}
    for glucose, bmi, age in [
        (85, 22, 25), (95, 24, 31), (100, 27, 28), (110, 29, 45), (120, 31, 38), (128, 26, 52),
        (140, 33, 41), (150, 35, 55), (160, 36, 48), (172, 38, 61), (185, 40, 58), (197, 43, 66),
    ]
]  # fmt: skip

# Every element with text of its own that is on screen, and its font size in CSS pixels.
TEXT_SIZES = """() => {
  const out = [];
  for (const el of document.querySelectorAll("#kiosk *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
    if (!own || !el.getClientRects().length || el.closest("[hidden], noscript")) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    out.push([el.tagName + "." + el.className, size, el.textContent.trim().slice(0, 40)]);
  }
  return out;
}"""
# The tiles in reading order (top to bottom, left to right), as percent and band.
TILES_IN_ORDER = """() => [...document.querySelectorAll("#kiosk-tiles .tile")]
  .map((t) => ({box: t.getBoundingClientRect(), risk: t.querySelector(".risk").textContent,
                band: t.querySelector(".band").textContent}))
  .sort((a, b) => a.box.top - b.box.top || a.box.left - b.box.left)
  .map((t) => [parseInt(t.risk, 10), t.band.trim().toLowerCase()])"""


@pytest.fixture(scope="module")
def server(module_server_env):
    module_server_env.extra["KIOSK_PUBLIC_URL"] = PUBLIC_URL
    daphne = DaphneServer(module_server_env).start()
    try:
        yield daphne
    finally:
        daphne.stop()


def legend_ranges(page) -> dict[str, tuple[int, int]]:
    """Each band's whole percents as the legend states them ("under 20%", "20–49%", "50% and over")."""
    ranges = {}
    for item in page.locator(".legend-item").all_text_contents():
        name, words = item.strip().split(" ", 1)
        numbers = [int(n) for n in re.findall(r"\d+", words)]
        if words.startswith("under"):
            ranges[name.lower()] = (0, numbers[0] - 1)
        elif "over" in words:
            ranges[name.lower()] = (numbers[0], 100)
        else:
            ranges[name.lower()] = (numbers[0], numbers[1])
    return ranges


def check_screen(page, server: DaphneServer, viewport: dict, name: str, tiles: int) -> None:
    """The board at ``viewport`` with ``tiles`` tiles: it fits, fills, shows a code of the public
    URL, passes axe and, on the lobby screen, has no text under 24 px."""
    page.set_viewport_size(viewport)
    open_kiosk_page(page, server, "lobby")
    page.wait_for_function(f"document.querySelectorAll('#kiosk-tiles .tile').length === {tiles}")
    assert page_width_overflow(page) <= 0, name
    assert page.evaluate("document.documentElement.scrollHeight") >= viewport["height"], f"{name} fills the screen"
    qr = page.locator("svg.qr").bounding_box()
    assert qr["width"] >= 200 and qr["y"] + qr["height"] <= viewport["height"], (name, qr)
    assert page.get_attribute(".kiosk-join figcaption a", "href") == f"{PUBLIC_URL}/?board=lobby"
    assert axe_violations(page) == [], name
    if viewport == LOBBY:
        small = [(what, size, text) for what, size, text in page.evaluate(TEXT_SIZES) if size < 24]
        assert small == [], f"{name}: text under 24 px across a lobby: {small}"
    shot(page, name, full_page=False)


def test_the_board_says_what_it_shows_and_fills_a_lobby_screen_and_a_tablet(server, new_page):
    page = new_page()
    with contextlib.ExitStack() as stack:
        # Nobody sharing: the board says so in words, and what it is about.
        check_screen(page, server, LOBBY, "kiosk-1920-empty", 0)
        assert page.is_visible("#kiosk-empty")
        heading = page.text_content("h1")
        subtitle = page.text_content(".kiosk-subtitle")
        assert "Diabetes risk" in heading and "five years" in subtitle and "chose to share" in subtitle
        assert "Anonymous" in subtitle and "No names, no measurements" in subtitle

        risks = []
        for features in SHARED:
            ws = stack.enter_context(server.connect())
            share(ws, "lobby")
            reply = ask(ws, {"type": "update", "seq": 1, "features": features})
            risks.append((reply["risk"], reply["band"]))
        check_screen(page, server, LOBBY, "kiosk-1920", len(SHARED))
        assert page.is_hidden("#kiosk-empty")
        assert page.text_content("#stat-active") == str(len(SHARED))
        shown = page.evaluate(TILES_IN_ORDER)
        # Ordered by risk, highest first, whatever the order they came in.
        assert [percent for percent, _ in shown] == sorted((p for p, _ in shown), reverse=True)
        assert sorted(band for _, band in shown) == sorted(band for _, band in risks)
        # The one rounding rule: a tile's percent lies in the legend's range of its band.
        ranges = legend_ranges(page)
        assert set(ranges) == {"low", "moderate", "high"}
        for percent, band in shown:
            low, high = ranges[band]
            assert low <= percent <= high, (percent, band, ranges)
        # No ids, no measurement: nothing on the board but words, percents, bands and the link.
        text = page.evaluate("document.getElementById('kiosk').innerText")
        assert "session" not in text.lower()
        for features in SHARED:
            assert f" {features['bmi']} " not in f" {text} "

        check_screen(page, server, TABLET, "kiosk-tablet", len(SHARED))
        # Portrait: the code and its words above the tiles, the tiles in more than one column.
        join = page.locator(".kiosk-join").bounding_box()
        first = page.locator("#kiosk-tiles .tile").first.bounding_box()
        assert join["y"] < first["y"]
        assert (
            page.evaluate("getComputedStyle(document.getElementById('kiosk-tiles')).gridTemplateColumns").count("px")
            >= 3
        )

        # A crowded lobby: smaller tiles, still no text under 24 px, and most of them on screen.
        for i in range(CROWD - len(SHARED)):
            ws = stack.enter_context(server.connect())
            share(ws, "lobby")
            ask(ws, {"type": "update", "seq": 1, "features": {**PERSON, "glucose": 80 + 2 * i, "age": 22 + i}})
        check_screen(page, server, LOBBY, "kiosk-1920-crowded", CROWD)
        assert page.get_attribute("#kiosk-tiles", "data-density") == "dense"
        on_screen = page.evaluate(
            "[...document.querySelectorAll('#kiosk-tiles .tile')]"
            ".filter((t) => t.getBoundingClientRect().bottom <= innerHeight).length"
        )
        assert on_screen >= 40, on_screen


@pytest.fixture
def delayed_server(server_env):
    """A daphne of its own with the default sharing delay, as a clinic runs it."""
    server_env.extra.update(KIOSK_PUBLIC_URL=PUBLIC_URL, BOARD_DELAY_S="10")
    daphne = DaphneServer(server_env).start()
    try:
        yield daphne
    finally:
        daphne.stop()


def test_the_page_behind_the_code_asks_first_on_a_phone(delayed_server, new_page):
    server = delayed_server
    page = new_page(viewport=PHONE)
    open_live_page(page, server, "?board=lobby")
    box = page.locator("#share")
    assert box.is_visible() and not page.is_checked("#share-on-board")  # off until turned on
    words = " ".join(box.text_content().split())
    for said in (
        "about 10 seconds later",
        "anonymous risk",
        "never shows your name or any measurement",
        "Anyone in the room",
        "leaving this page",
    ):
        assert said in words, said
    assert page.text_content("#share-status").startswith("Not shared")
    assert page_width_overflow(page) <= 0 and axe_violations(page) == []
    page.evaluate("window.scrollTo(0, document.getElementById('share').offsetTop - 140)")
    shot(page, "share-phone-before", full_page=False)

    kiosk = new_page(viewport=LOBBY)
    open_kiosk_page(kiosk, server, "lobby")
    for key, value in (("glucose", "150"), ("bmi", "34"), ("age", "52")):
        page.fill(f"#id_{key}", value)
    page.wait_for_selector("#live-risk-value:has-text('%')")
    kiosk.wait_for_timeout(1000)
    assert kiosk.locator("#kiosk-tiles .tile").count() == 0  # typed, not shared: nothing shown

    page.check("#share-on-board")
    page.wait_for_selector("#share-status:has-text('Shared')")
    assert "in about 10 seconds" in page.text_content("#share-status")
    kiosk.wait_for_selector("#kiosk-tiles .tile")  # after the delay
    assert page_width_overflow(page) <= 0 and axe_violations(page) == []
    page.evaluate("window.scrollTo(0, document.getElementById('share').offsetTop - 140)")
    shot(page, "share-phone-after", full_page=False)
    page.uncheck("#share-on-board")
    kiosk.wait_for_selector("#kiosk-tiles .tile", state="detached", timeout=5000)
