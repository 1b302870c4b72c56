"""axe-core on every dashboard page, at desktop and phone width, and a keyboard walk with a visible focus.

No worker: the data is made here (a ready twin with accepted, refused and unchecked photos and a
reference face; a finished generation), so the whole file takes seconds.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.images import ImageFile
from PIL import Image

from tests.browser.conftest import finished_generation
from tests.browser.support import DESKTOP, PHONE, accessibility_problems, focus_indicator, open_page
from tests.factories import TwinFactory, UserFactory
from twins.models import Selfie, SelfieRejection

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

FOCUS_CONTRAST = 3.0  # WCAG 1.4.11: a focus indicator against what is next to it


def _png(size: int, colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _twin_with_photos(owner: Any, faces_dir: Path) -> Any:
    twin = TwinFactory(owner=owner, ready=True, name="Uma")
    twin.reference_face.save("face.png", ContentFile(_png(256, (200, 170, 150))), save=True)
    photos = sorted((faces_dir / "george_w_bush").glob("*.jpg"))[:4]
    verdicts = [
        (Selfie.Status.ACCEPTED, ""),
        (Selfie.Status.ACCEPTED, ""),
        (Selfie.Status.REJECTED, SelfieRejection.MULTIPLE_FACES),
        (Selfie.Status.PENDING, ""),
    ]
    for path, (status, reason) in zip(photos, verdicts, strict=True):
        data = path.read_bytes()
        selfie = Selfie(
            twin=twin,
            sha256=hashlib.sha256(data).hexdigest(),
            status=status,
            reason=reason,
            original_name=path.name,
            message="Two faces of similar size." if reason else "",
        )
        selfie.image.save(path.name, ImageFile(io.BytesIO(data), name=path.name), save=True)
    return twin


@pytest.fixture
def site(live_server, faces_dir, log_in) -> dict[str, Any]:
    # Staff: the admin is one of the pages, and the staff-only readiness banner (no worker runs here) is checked too.
    uma = UserFactory(username="uma", is_staff=True, is_superuser=True)
    twin = _twin_with_photos(uma, faces_dir)
    job = finished_generation(twin, [0.71, None, 0.24])
    return {"url": live_server.url, "twin": twin, "job": job, "log_in": log_in}


def _pages(site: dict[str, Any]) -> list[tuple[str, str]]:
    twin, job = site["twin"], site["job"]
    return [
        ("/", "dashboard"),
        (f"/twins/{twin.pk}/", "twin"),
        (f"/twins/{twin.pk}/generate/new/", "generate"),
        (f"/generations/{job.pk}/", "job"),
        ("/generations/", "history"),
        ("/settings/", "settings"),
        ("/admin/", "admin"),
        (f"/admin/twins/twin/{twin.pk}/change/", "admin-twin"),
    ]


def test_no_serious_axe_violation_on_any_page_at_desktop_and_phone_width(site, chromium):
    """axe-core's critical and serious WCAG 2.1 A/AA violations, and the basic checks, on every page."""
    found: dict[str, list[str]] = {}
    for viewport, width in [(DESKTOP, "desktop"), (PHONE, "phone")]:
        page, context, _errors = open_page(chromium, viewport=viewport)
        for path, name in [("/login/", "login"), ("/signup/", "signup")]:
            page.goto(site["url"] + path)
            found[f"{name} {width}"] = accessibility_problems(page)
        site["log_in"](page, "uma")
        for path, name in _pages(site):
            page.goto(site["url"] + path)
            if name == "twin":
                page.wait_for_load_state("networkidle")  # it renders its photos again from the API
            found[f"{name} {width}"] = accessibility_problems(page)
            if name == "twin" and width == "desktop":  # the thumbnails as twins.js leaves them after its refresh
                alts = page.eval_on_selector_all("#selfie-grid img", "imgs => imgs.map(i => i.alt)")
                assert sorted(alts) == [
                    "Selfie 1, accepted",
                    "Selfie 2, accepted",
                    "Selfie 3, refused",
                    "Selfie 4, not checked yet",
                ]
                # A message from the last action (an error, announced as an alert) on top of the page.
                page.fill("#danger-heading ~ form input[name=name]", "   ")
                page.get_by_role("button", name="Rename").click()
                page.wait_for_selector(".messages .message.error")
                found[f"twin+message {width}"] = accessibility_problems(page)
            if name == "job" and width == "desktop":
                page.click("[data-field=gallery] img >> nth=0")
                assert page.locator("#lightbox").is_visible()
                found[f"job+lightbox {width}"] = accessibility_problems(page)
                page.keyboard.press("Escape")
                # A success message on top of the page (the phone pass below sees two photos left).
                page.once("dialog", lambda dialog: dialog.accept())
                page.click("[aria-label='Delete photo 3']")
                page.wait_for_selector(".messages .message.success")
                found[f"job+message {width}"] = accessibility_problems(page)
        context.close()
    failing = {page: problems for page, problems in found.items() if problems}
    assert failing == {}, "\n".join(f"{page}: {problems}" for page, problems in failing.items())


def _tab_to(page: Any, selector: str, *, limit: int = 80) -> Any:
    """Press Tab until the focused element matches `selector`; the element, or a failure naming the path taken."""
    path = []
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return page.evaluate_handle("document.activeElement")
        path.append(page.evaluate("document.activeElement.id || document.activeElement.outerHTML.slice(0, 60)"))
    raise AssertionError(f"Tab never reached {selector}; it went through {path}")


def _assert_visible_focus(page: Any, selector: str, what: str) -> None:
    _tab_to(page, selector)
    indicator = focus_indicator(page)
    assert indicator["width"] >= 2, f"{what}: focus outline {indicator}"
    assert indicator["contrast"] >= FOCUS_CONTRAST, f"{what}: focus indicator {indicator}"


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_keyboard_reaches_upload_enroll_generate_and_gallery_with_a_visible_focus(site, chromium, viewport):
    page, context, errors = open_page(chromium, viewport=viewport)
    site["log_in"](page, "uma")
    twin, job = site["twin"], site["job"]

    page.goto(f"{site['url']}/twins/{twin.pk}/")
    page.wait_for_load_state("networkidle")
    _assert_visible_focus(page, "#enroll-button", "enroll")
    _assert_visible_focus(page, "#generate-panel button[type=submit]", "generate")
    _assert_visible_focus(page, "#file-input", "upload")

    page.goto(f"{site['url']}/generations/{job.pk}/")
    _assert_visible_focus(page, "[data-field=gallery] img", "gallery photo")
    _assert_visible_focus(page, "[data-field=gallery] a", "gallery download")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")  # opens the lightbox: its controls show their focus on the dark backdrop
    assert page.locator("#lightbox").is_visible()
    indicator = focus_indicator(page)
    assert indicator["contrast"] >= FOCUS_CONTRAST, f"lightbox: focus indicator {indicator}"
    context.close()
    assert errors == []
