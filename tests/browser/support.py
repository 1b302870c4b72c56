"""The one way to drive a real browser in the tests: Debian's Chromium through Playwright's sync API,
plus what every browser test needs (screenshots CI can show, drag-and-drop, phone-width and
accessibility checks). tests/conftest.py exposes it as the `chromium` and `browser_page` fixtures."""

from __future__ import annotations

import base64
import contextlib
import mimetypes
import os
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import ROOT

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}  # an iPhone 12-14 in CSS pixels


def chromium_executable() -> str:
    executable = "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else shutil.which("chromium")
    if executable is None:
        pytest.skip("Chromium is not installed (./twinsite.sh test installs Debian's chromium)")
    return executable


@contextlib.contextmanager
def launch_chromium(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = chromium_executable()
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make here
    # are still plain synchronous calls, which Django would otherwise refuse next to a running loop.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_page(
    browser: Any, *, viewport: dict[str, int] = DESKTOP, enforce_csp: bool = False
) -> tuple[Any, Any, list[str]]:
    """A fresh context (own cookies) and page; `errors` collects page exceptions and console errors.

    The pages' Content-Security-Policy forbids eval(), which Playwright's wait_for_function polls
    through, so contexts bypass it unless `enforce_csp`; tests/browser/test_csp.py checks the policy.
    """
    context = browser.new_context(viewport=viewport, accept_downloads=True, bypass_csp=not enforce_csp)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    return page, context, errors


def unexpected(errors: Iterable[str], *expected_statuses: int) -> list[str]:
    """The errors left after dropping the browser's notes on HTTP statuses the test provoked on purpose."""
    if not expected_statuses:
        return list(errors)
    allowed = re.compile(r"status of ({})\b".format("|".join(str(s) for s in expected_statuses)))
    return [e for e in errors if not allowed.search(e)]


def artifacts_dir() -> Path:
    return Path(os.environ.get("TEST_ARTIFACTS_DIR") or ROOT / "test-artifacts")


class Screenshots:
    """Numbered full-page screenshots of one test, under $TEST_ARTIFACTS_DIR/screenshots/<test>/;
    each path is printed at once so CI logs show where they are."""

    def __init__(self, name: str, write_line: Callable[[str], None]):
        self.folder = artifacts_dir() / "screenshots" / name
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self.write_line = write_line
        self.count = 0
        self.paths: list[Path] = []

    def take(self, page: Any, step: str, *, full_page: bool = True) -> Path:
        # Lazy images below the fold would stay blank in a full-page shot: load them all first.
        page.evaluate("document.querySelectorAll('img[loading=lazy]').forEach(i => { i.loading = 'eager'; })")
        with contextlib.suppress(Exception):  # a broken image must not hide the rest of the screenshot
            page.wait_for_function("[...document.images].every(i => i.complete)", timeout=5_000)
        self.count += 1
        path = self.folder / f"{self.count:02d}-{step}-{page.viewport_size['width']}px.png"
        page.screenshot(path=str(path), full_page=full_page)
        self.paths.append(path)
        self.write_line(f"screenshot: {path}")
        return path


def drop_files(page: Any, selector: str, paths: Iterable[Path]) -> None:
    """Drag-and-drop files onto an element the way a person does: dragenter, dragover, drop."""
    files = [{"name": p.name, "type": mimetypes.guess_type(p.name)[0] or "application/octet-stream",
              "data": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    page.evaluate(
        """([selector, files]) => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), c => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, {type: f.type}));
            }
            const zone = document.querySelector(selector);
            for (const type of ["dragenter", "dragover", "drop"]) {
                zone.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: transfer}));
            }
        }""",
        [selector, files],
    )


def assert_fits_width(page: Any) -> None:
    """Nothing sticks out sideways: the page never needs horizontal scrolling."""
    scroll_width, viewport = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= viewport, f"{page.url} is {scroll_width}px wide in a {viewport}px viewport"


_A11Y_CHECKS = """() => {
    const problems = [];
    const visible = el => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
    if (document.querySelectorAll('h1').length !== 1) problems.push('expected exactly one h1');
    for (const img of document.images) {
        if (!img.hasAttribute('alt')) problems.push('img without alt: ' + img.src);
    }
    for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
        const named = (el.labels && el.labels.length) || el.getAttribute('aria-label')
            || el.getAttribute('aria-labelledby');
        if (!named) problems.push('control without a label: ' + (el.name || el.id));
    }
    for (const el of document.querySelectorAll('button, a[href]')) {
        if (!visible(el)) continue;
        const named = el.textContent.trim() || el.getAttribute('aria-label')
            || el.querySelector('img[alt]:not([alt=""])');
        if (!named) problems.push('unnamed ' + el.tagName.toLowerCase() + ': ' + el.outerHTML.slice(0, 80));
    }
    return problems;
}"""


def accessibility_problems(page: Any) -> list[str]:
    """Basic checks a keyboard or screen-reader user depends on: one h1, named controls, alt text."""
    return page.evaluate(_A11Y_CHECKS)
