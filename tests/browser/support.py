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

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
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
    files = [
        {
            "name": p.name,
            "type": mimetypes.guess_type(p.name)[0] or "application/octet-stream",
            "data": base64.b64encode(p.read_bytes()).decode(),
        }
        for p in paths
    ]
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
    const fields = 'input:not([type=hidden], [type=submit], [type=button], [type=reset]), select, textarea';
    for (const el of document.querySelectorAll(fields)) {
        const named = (el.labels && el.labels.length) || el.getAttribute('aria-label')
            || el.getAttribute('aria-labelledby');
        if (!named) problems.push('control without a label: ' + (el.name || el.id));
    }
    // A description or name that points at a missing id is never read out (help texts were, once).
    for (const el of document.querySelectorAll('[aria-describedby], [aria-labelledby]')) {
        for (const attr of ['aria-describedby', 'aria-labelledby']) {
            for (const id of (el.getAttribute(attr) || '').split(/\\s+/).filter(Boolean)) {
                if (document.getElementById(id)) continue;
                problems.push(attr + ' of ' + (el.name || el.id) + ' names a missing #' + id);
            }
        }
    }
    for (const el of document.querySelectorAll('button, a[href]')) {
        if (!visible(el)) continue;
        const named = el.textContent.trim() || el.getAttribute('aria-label')
            || el.querySelector('img[alt]:not([alt=""])');
        if (!named) problems.push('unnamed ' + el.tagName.toLowerCase() + ': ' + el.outerHTML.slice(0, 80));
    }
    return problems;
}"""


# axe-core (npm), installed by `./twinsite.sh test` next to Chromium; AXE_CORE_JS points elsewhere.
AXE_VERSION = "4.14.1"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]  # WCAG 2.1 A and AA, as the audit measured
AXE_BLOCKING = ("critical", "serious")
_AXE_RUN = """async tags => {
    const results = await axe.run(document, {runOnly: {type: 'tag', values: tags}, resultTypes: ['violations']});
    return results.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map(n => n.target.join(' '))}));
}"""


def axe_source() -> str:
    path = Path(os.environ.get("AXE_CORE_JS") or ROOT / "var" / "node" / "node_modules" / "axe-core" / "axe.min.js")
    if not path.is_file():
        pytest.skip(f"axe-core not found at {path} (./twinsite.sh test installs axe-core@{AXE_VERSION})")
    return path.read_text()


def axe_violations(page: Any, *, impacts: Iterable[str] = AXE_BLOCKING) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A/AA violations of the page as it is now, of the given impacts."""
    # Evaluated through the DevTools protocol, not a <script> tag: the site's CSP cannot refuse it.
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(axe_source())
    wanted = set(impacts)
    return [v for v in page.evaluate(_AXE_RUN, AXE_TAGS) if v["impact"] in wanted]


def accessibility_problems(page: Any) -> list[str]:
    """What a keyboard or screen-reader user depends on: one h1, named controls, alt text, and no
    critical or serious axe-core violation."""
    problems = page.evaluate(_A11Y_CHECKS)
    for v in axe_violations(page):
        problems.append(f"axe {v['impact']} {v['id']} ({v['help']}): {len(v['nodes'])} nodes, e.g. {v['nodes'][:3]}")
    return problems


_FOCUS_INDICATOR = """() => {
    // The focused element's outline, or (for a visually hidden control, like the file input inside the
    // drop zone) the outline of the nearest ancestor that shows the focus for it.
    let el = document.activeElement;
    const rect = el.getBoundingClientRect();
    if (rect.width <= 1 || rect.height <= 1) {
        el = el.parentElement;
        while (el && getComputedStyle(el).outlineStyle === 'none') el = el.parentElement;
        if (!el) return {element: null, width: 0, contrast: 0};
    }
    const style = getComputedStyle(el);
    const rgba = s => {
        const m = s.match(/[\\d.]+/g).map(Number);
        return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1];
    };
    const over = (top, below) => top.slice(0, 3).map((c, i) => c * top[3] + below[i] * (1 - top[3])).concat(1);
    // What the outline is drawn on: it sits outside the element (outline-offset), so the backgrounds of
    // the ancestors, composited from the first opaque one up; a gradient counts as each of its colours.
    const layers = [];
    for (let node = el.parentElement; node; node = node.parentElement) {
        const s = getComputedStyle(node);
        const stops = (s.backgroundImage.match(/rgba?\\([^)]*\\)/g) || []).map(rgba);
        if (stops.length) { layers.push(stops); if (stops.every(c => c[3] === 1)) break; }
        const colour = rgba(s.backgroundColor);
        if (colour[3] > 0) { layers.push([colour]); if (colour[3] === 1) break; }
    }
    let below = [[255, 255, 255, 1]];  // the canvas
    for (const layer of layers.reverse()) below = layer.flatMap(top => below.map(b => over(top, b)));
    const linear = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    const lum = c => { const [r, g, b] = c.slice(0, 3).map(linear); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const ring = over(rgba(style.outlineColor), below[0]);
    const ratio = (a, b) => {
        const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
        return (hi + 0.05) / (lo + 0.05);
    };
    return {element: el.id || el.tagName.toLowerCase() + '.' + el.className, style: style.outlineStyle,
            width: style.outlineStyle === 'none' ? 0 : parseFloat(style.outlineWidth), colour: style.outlineColor,
            backgrounds: below.map(c => 'rgb(' + c.slice(0, 3).map(Math.round).join(',') + ')'),
            contrast: Math.min(...below.map(b => ratio(ring, b)))};
}"""


def focus_indicator(page: Any) -> dict[str, Any]:
    """The focused control's outline (computed styles): its width in px, and its lowest contrast ratio
    against the backgrounds it is drawn on (WCAG 1.4.11 asks for 3:1)."""
    return page.evaluate(_FOCUS_INDICATOR)
