"""The pages work under the real Content-Security-Policy (README: "Access and roles"): Chromium
(not bypassing the policy) reports no violation, the live page still answers as a person types,
and Swagger UI still renders the API document from its separately served init script."""

import pytest
from playwright.sync_api import ConsoleMessage, expect

from tests.browser import TIMEOUT_MS
from tests.servers import daphne_servers

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def watch_csp(page) -> list[str]:
    """Console messages about the Content-Security-Policy (Chromium logs every violation)."""
    violations: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda e: violations.append(f"page error: {e}"))
    return violations


def test_pages_run_under_the_policy_without_violations(server_env, new_page):
    with daphne_servers(server_env) as [server]:
        page = new_page(bypass_csp=False, viewport={"width": 390, "height": 900})  # the policy is enforced
        violations = watch_csp(page)

        response = page.goto(f"{server.http}/")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        assert "no-store" in response.headers["cache-control"]
        page.wait_for_selector("#live-status[data-state='connected']")
        page.type("#id_glucose", "148", delay=30)
        expect(page.locator("#live-risk-value")).to_contain_text("%", timeout=TIMEOUT_MS)

        for path in ("/model/", "/kiosk/", "/admin/login/"):
            assert page.goto(f"{server.http}{path}").status == 200

        page.goto(f"{server.http}/api/docs/")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Diabetes risk API", timeout=TIMEOUT_MS)
        expect(page.locator(".swagger-ui .btn.authorize")).to_be_visible()
        assert violations == []
