"""The twin page in a real Chromium: choose files, see per-file results, enroll, watch it finish live.

The browser comes from the shared `browser_page` fixture (tests/conftest.py, tests/browser/support.py)."""

from __future__ import annotations

import pytest

from tests.factories import TwinFactory
from tests.twins.conftest import photos
from twins import tasks
from twins.models import Twin

pytestmark = pytest.mark.browser


def test_upload_enroll_and_live_progress(browser_page, live_server, client, alice, lfw, settings, tmp_path):
    page, context, errors = browser_page
    twin = TwinFactory(owner=alice, name="Browser twin")
    client.force_login(alice)
    context.add_cookies([{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}])
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("not a photo")

    page.goto(f"{live_server.url}/twins/{twin.pk}/")
    assert page.locator("#twin-status").inner_text() == "Draft"
    page.set_input_files("#file-input", [str(p) for p in photos(lfw / "george_w_bush", 16)] + [str(not_a_photo)])

    page.wait_for_function("document.getElementById('upload-summary').textContent.startsWith('17 of 17 sent')")
    assert "16 uploaded · 1 refused" in page.locator("#upload-summary").inner_text()
    assert "This is not a supported image" in page.locator("#upload-queue").inner_text()
    page.wait_for_function("document.querySelectorAll('#selfie-grid .thumb').length === 16")
    page.wait_for_function(  # the thumbnails come through the authenticated image view
        "[...document.querySelectorAll('#selfie-grid img')].every(i => i.complete && i.naturalWidth > 0)"
    )

    page.click("#enroll-button")
    page.wait_for_selector("#twin-status.enrolling")
    assert page.locator("#enroll-button").is_disabled()
    assert not page.locator("#enroll-progress").is_hidden()

    assert tasks.enroll_twin_task(twin.pk) == Twin.Status.READY  # what the gpu worker would do

    page.wait_for_selector("#twin-status.ready", timeout=15_000)  # polled, no reload
    assert page.locator("#enroll-progress").is_hidden()
    assert page.locator("#selfie-grid .badge.accepted").count() >= 15
    assert "Ready:" in page.locator("#status-message").inner_text()
    # The batch holding only the text file is refused as a whole (415): expected, and shown per file.
    assert [e for e in errors if "status of 415" not in e] == []
