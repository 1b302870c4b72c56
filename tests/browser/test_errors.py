"""What goes wrong, in a real Chromium: files that are not photos, too few good photos (enrolled by the
real worker), a form sent empty, a daily limit reached, and somebody else's addresses (404)."""

from __future__ import annotations

import re

import pytest

from generation.models import GenerationJob
from tests.browser.conftest import MIN_PHOTOS, finished_generation
from tests.browser.support import accessibility_problems, unexpected
from tests.factories import GenerationJobFactory, TwinFactory, UserFactory
from twins.models import Twin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_bad_files_and_too_few_good_photos(live_server, gpu_worker, browser_page, shots, log_in, faces_dir, tmp_path):
    page, _context, errors = browser_page
    UserFactory(username="fay")
    log_in(page, "fay")

    # A twin without a name is refused with a message next to the field.
    page.get_by_role("button", name="Create twin").click()
    assert "This field is required." in page.locator(".field-error").inner_text()
    shots.take(page, "create-without-a-name")
    page.fill("#id_name", "Fay")
    page.get_by_role("button", name="Create twin").click()
    page.wait_for_url(re.compile(r"/twins/\d+/$"))

    # Files that are not usable photos, chosen with the file picker: each one refused with its reason.
    text = tmp_path / "holiday.jpg"
    text.write_text("<html>not a photo</html>")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    tiny = faces_dir / "_hard" / "tiny_derived_bush001_28px.jpg"
    page.set_input_files("#file-input", [str(text), str(empty), str(tiny)])
    page.wait_for_function("document.getElementById('upload-summary').textContent.startsWith('3 of 3 sent')")
    assert "0 uploaded · 3 refused" in page.locator("#upload-summary").inner_text()
    refusals = page.locator("#upload-queue").inner_text()
    assert "holiday.jpg: This is not a supported image" in refusals
    assert "empty.png: The file is empty" in refusals
    assert "tiny_derived_bush001_28px.jpg: The photo is 28x28 pixels" in refusals
    assert page.locator("#enroll-button").is_disabled()  # nothing to enroll yet
    shots.take(page, "bad-files")

    # Too few good photos: three of one face, a photo without a face and a blurry one. The real worker
    # checks them and the twin fails with what to fix; refused photos show why.
    good = sorted((faces_dir / "george_w_bush").glob("*.jpg"))[:3]
    page.set_input_files("#file-input", [str(p) for p in good] + [str(faces_dir / "_hard" / "noface_coffee.png")])
    page.wait_for_function("document.getElementById('upload-summary').textContent.includes('4 uploaded')")
    page.click("#enroll-button")
    page.wait_for_selector("#twin-status.failed", timeout=120_000)
    twin = Twin.objects.get(owner__username="fay")
    assert twin.status == Twin.Status.FAILED
    message = page.locator("#status-message").inner_text()
    assert message.startswith("Only 3 of 4 photos passed the checks") and f"at least {MIN_PHOTOS}" in message
    assert "Remove the refused photos or add new ones" in page.locator("#next-step").inner_text()
    refused = page.locator('.selfie-group[data-group="rejected"]')
    assert refused.locator(".badge").inner_text() == "No face found"
    assert "Once enrollment succeeds" in page.locator("#generate-panel").inner_text()
    assert page.locator("#enroll-button").is_enabled()
    assert accessibility_problems(page) == []
    shots.take(page, "too-few-good-photos")

    # The refused photo can go, without a reload.
    refused.get_by_role("button", name="Remove noface_coffee.png").click()
    page.wait_for_selector('.selfie-group[data-group="rejected"]', state="detached")
    assert twin.selfies.count() == 3

    # The browser notes the 400s of the empty name and of the batch that held only refused files.
    assert unexpected(errors, 400, 415) == []


def test_limits_and_strangers(live_server, browser_page, shots, log_in, settings):
    page, _context, errors = browser_page
    settings.GENERATION_MAX_IMAGES_PER_DAY = 3
    gus = UserFactory(username="gus")
    twin = TwinFactory(owner=gus, ready=True, name="Gus")
    bob = UserFactory(username="bob")
    bobs_twin = TwinFactory(owner=bob, ready=True, name="Bob")
    bobs_job = finished_generation(bobs_twin, [0.66])
    log_in(page, "gus")

    # A generation over the daily limit: the form says so and keeps what was typed.
    page.goto(f"{live_server.url}/twins/{twin.pk}/generate/new/")
    page.click("text=Business headshot")
    page.select_option("#id_num_images", "4")
    page.click("main button[type=submit]")
    assert "the limit is 3" in page.locator("[role=alert]").inner_text()
    assert page.locator("#id_prompt").input_value().startswith("professional business headshot")
    assert not GenerationJob.objects.filter(owner=gus).exists()
    shots.take(page, "daily-limit")

    # A failed generation says what happened and offers to try again.
    failed = GenerationJobFactory(
        twin=twin,
        num_images=2,
        status=GenerationJob.Status.FAILED,
        error="Generation failed: the GPU ran out of memory.",
    )
    page.goto(f"{live_server.url}/generations/{failed.pk}/")
    assert "the GPU ran out of memory" in page.locator("[data-field=error]").inner_text()
    assert page.locator("text=Try again with the same settings").is_visible()
    shots.take(page, "failed-generation")

    # Somebody else's twin, generation, photo, zip and generate page: 404, with a way back.
    for path in [
        f"/twins/{bobs_twin.pk}/",
        f"/generations/{bobs_job.pk}/",
        f"/generations/{bobs_job.pk}/images/1/",
        f"/generations/{bobs_job.pk}/zip/",
        f"/twins/{bobs_twin.pk}/generate/new/",
        f"/twins/{bobs_twin.pk}/selfies/1/image",
    ]:
        response = page.goto(live_server.url + path)
        assert response.status == 404, path
    page.goto(f"{live_server.url}/twins/{bobs_twin.pk}/")
    assert page.get_by_role("heading", name="Page not found").is_visible()
    assert "Bob" not in page.locator("main").inner_text()
    shots.take(page, "someone-elses-twin")
    page.click("text=Go to your twins")
    page.wait_for_url(f"{live_server.url}/")

    # Logged out, a twin's address leads to the login page and back.
    page.click("text=Log out")
    page.goto(f"{live_server.url}/twins/{twin.pk}/")
    assert re.search(r"/login/\?next=/twins/\d+/$", page.url)
    shots.take(page, "login-first")

    assert unexpected(errors, 400, 404, 429) == []
