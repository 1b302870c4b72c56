"""Every page under the Content-Security-Policy, in a real Chromium: the dashboard pages, the admin and
the API docs load with no policy violation, and their scripts run (an inline script or style="" that
the policy blocks shows up here as a violation or as a page left unfilled by its JS)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import finished_generation
from tests.browser.support import open_page, unexpected
from tests.factories import GenerationJobFactory, TwinFactory, UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Collects every violation the page reports, from before its first script runs.
_LISTEN = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (e) {
  window.__cspViolations.push(e.violatedDirective + " blocked " + (e.blockedURI || "inline") +
                              " at " + e.sourceFile + ":" + e.lineNumber);
});
"""

APP_JS_RAN = "document.documentElement.classList.contains('js')"


def _visit(page: Any, url: str, ran: str, problems: list[str]) -> None:
    """Open `url`; note a missing or loose policy, a violation, or `ran` (a JS check) coming out false.

    Checked once the page is idle with page.evaluate (the DevTools protocol, which the policy does not
    govern): Playwright's wait_for_function polls through eval(), which this very policy blocks."""
    response = page.goto(url)
    assert response is not None
    policy = response.headers.get("content-security-policy", "")
    if "script-src 'self'" not in policy or "unsafe-inline" in policy:
        problems.append(f"{url}: policy {policy!r}")
    page.wait_for_load_state("networkidle")
    try:
        ran_ok = page.evaluate(ran)
    except Exception as exc:
        ran_ok = f"{exc}".splitlines()[0]
    if ran_ok is not True:
        problems.append(f"{url}: its JS did not run ({ran}: {ran_ok})")
    problems.extend(f"{url}: {v}" for v in page.evaluate("window.__cspViolations"))


@pytest.fixture
def enforcing_page(chromium):
    """A page that keeps the policy (the other browser tests' pages bypass it: see open_page)."""
    page, context, errors = open_page(chromium, enforce_csp=True)
    yield page, context, errors
    context.close()


def test_no_page_breaks_under_the_content_security_policy(live_server, enforcing_page, log_in, shots):
    page, context, errors = enforcing_page
    context.add_init_script(_LISTEN)
    staff = UserFactory(username="csp", is_staff=True, is_superuser=True)
    twin = TwinFactory(owner=staff, ready=True, name="Policy")
    draft = TwinFactory(owner=staff, name="Draft")
    job = finished_generation(twin, [0.7])
    running = GenerationJobFactory(twin=twin, num_images=2)
    base = live_server.url
    problems: list[str] = []

    for path in ("/login/", "/signup/", "/no-such-page/"):
        _visit(page, base + path, APP_JS_RAN, problems)

    log_in(page, "csp")
    pages = {
        "/": APP_JS_RAN,
        f"/twins/{twin.pk}/": APP_JS_RAN,
        # twins.js builds the drop zone's queue list; the bar's width comes from data-percent (app.js).
        f"/twins/{draft.pk}/": "document.querySelector('#file-input') !== null && " + APP_JS_RAN,
        f"/twins/{twin.pk}/generate/new/": APP_JS_RAN,
        "/generations/": APP_JS_RAN,
        f"/generations/{job.pk}/": "document.querySelector('[data-field=bar]').style.width === '100%'",
        f"/generations/{running.pk}/": APP_JS_RAN,
        "/settings/": "document.querySelector('[data-percent]').style.width !== ''",
        "/account/password/": APP_JS_RAN,
        "/account/delete-data/": APP_JS_RAN,
        "/account/delete/": APP_JS_RAN,
        # Django's admin scripts set the colour theme on <html> as they start.
        "/admin/": "document.documentElement.dataset.theme !== undefined",
        "/admin/twins/twin/": "document.documentElement.dataset.theme !== undefined",
        f"/admin/twins/twin/{twin.pk}/change/": "document.documentElement.dataset.theme !== undefined",
        "/admin/generation/generationjob/": "document.documentElement.dataset.theme !== undefined",
        "/admin/accounts/user/": "document.documentElement.dataset.theme !== undefined",
        # Swagger UI renders the schema it fetched.
        "/api/docs/": "(document.querySelector('.swagger-ui .info .title') || {}).textContent.includes('Twinsite')",
    }
    for path, ran in pages.items():
        _visit(page, base + path, ran, problems)
    shots.take(page, "api-docs")

    # The generate page's preset ideas (generation.js) still fill the prompt.
    page.goto(f"{base}/twins/{twin.pk}/generate/new/")
    page.locator("[data-preset]").first.click()
    assert page.locator("[data-preset]").first.get_attribute("aria-pressed") == "true"
    assert page.locator("textarea[name=prompt]").input_value()

    # The settings page's token toggle (app.js) still works.
    page.goto(f"{base}/settings/")
    page.click("#token-toggle")
    assert page.locator("#token-toggle").get_attribute("aria-expanded") == "true"

    assert problems == [], "\n".join(problems)
    csp_console = [e for e in errors if "Content Security Policy" in e or "Content-Security-Policy" in e]
    assert csp_console == []
    assert unexpected(errors, 404) == []
