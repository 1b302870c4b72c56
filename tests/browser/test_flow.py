"""The whole dashboard in a real Chromium, from sign-up to downloaded portraits, with a real gpu worker.

Sign up → "create your twin" guide → drag-and-drop upload with per-photo verdicts → enroll with live
progress → twin page with accepted/refused photos → generate with a preset → live progress, a second
job waiting in the queue (then cancelled) → gallery with identity scores, lightbox, downloads, zip,
delete → history; then every page again at phone width. No step reloads a page to see progress.
"""

from __future__ import annotations

import io
import re
import zipfile

import pytest

from generation.models import GenerationJob
from tests.browser.conftest import MIN_PHOTOS
from tests.browser.support import PHONE, accessibility_problems, assert_fits_width, drop_files, unexpected
from tests.conftest import PASSWORD
from twins.models import Twin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GOOD_PHOTOS = 10  # of one person; MIN_PHOTOS of them are needed
STEPS = 40  # long enough (~0.2 s a step for 4 tiny images) to queue a second job behind it
NO_RELOAD = "window.__stillTheSamePage === true"  # set once; a reload would drop it


def check_page(page) -> None:
    assert accessibility_problems(page) == [], page.url


def test_from_sign_up_to_downloaded_portraits(live_server, gpu_worker, browser_page, shots, faces_dir, tmp_path):
    page, context, errors = browser_page
    url = live_server.url

    # Sign up.
    page.goto(f"{url}/signup/")
    check_page(page)
    shots.take(page, "signup")
    page.fill("#id_username", "dana")
    page.fill("#id_email", "dana@example.com")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{url}/")

    # The "create your twin" guide.
    assert page.get_by_role("heading", name="Create your twin").is_visible()
    guide = page.locator("main").inner_text()
    assert f"{MIN_PHOTOS} or more photos" in guide and "No sunglasses" in guide and "One face" in guide
    assert "Welcome to Twinsite" in guide
    check_page(page)
    shots.take(page, "guide")
    page.fill("#id_name", "Dana")
    page.get_by_role("button", name="Create twin").click()
    page.wait_for_url(re.compile(r"/twins/\d+/$"))
    twin = Twin.objects.get(owner__username="dana")
    assert page.locator("#twin-stepper .current").inner_text() == f"Add {MIN_PHOTOS}+ photos"
    check_page(page)
    shots.take(page, "empty-twin")

    # The file picker is reachable by keyboard although the drop zone hides the raw input.
    page.focus("#file-input")
    assert page.evaluate("document.activeElement.id") == "file-input"
    assert page.locator("#dropzone").evaluate("el => el.matches(':focus-within')")

    # Drag-and-drop upload: thumbnails at once, then a verdict for each file.
    page.evaluate("window.__stillTheSamePage = true")
    not_a_photo = tmp_path / "notes.jpg"
    not_a_photo.write_text("these are my notes, not a photo")
    good = sorted((faces_dir / "george_w_bush").glob("*.jpg"))[:GOOD_PHOTOS]
    files = [
        *good[:5],
        not_a_photo,
        faces_dir / "_hard" / "group_two_people.jpg",
        *good[5:],
        faces_dir / "_hard" / "tiny_derived_bush001_28px.jpg",
    ]
    drop_files(page, "#dropzone", files)
    page.wait_for_selector("#upload-queue .thumb")
    shots.take(page, "uploading")
    page.wait_for_function(
        f"document.getElementById('upload-summary').textContent.startsWith('{len(files)} of {len(files)} sent')"
    )
    assert f"{GOOD_PHOTOS + 1} uploaded · 2 refused" in page.locator("#upload-summary").inner_text()
    refused = page.locator("#upload-queue").inner_text()
    assert "notes.jpg: This is not a supported image" in refused
    assert "must be at least 200 pixels" in refused
    page.wait_for_function(f"document.querySelectorAll('#selfie-grid .thumb').length === {GOOD_PHOTOS + 1}")
    assert page.locator('.selfie-group[data-group="pending"] h3').inner_text() == f"Not checked yet ({GOOD_PHOTOS + 1})"
    assert page.locator("#twin-stepper [data-step=photos]").get_attribute("class") == "done"
    shots.take(page, "uploaded")

    # Enroll: live progress, photo by photo, then the verdicts.
    page.click("#enroll-button")
    page.wait_for_selector("#twin-status.enrolling")
    assert page.locator("#enroll-button").is_disabled()
    page.wait_for_selector("#selfie-grid .thumb.checked, #twin-status.ready, #twin-status.failed", timeout=60_000)
    shots.take(page, "enrolling")
    page.wait_for_selector("#twin-status.ready", timeout=120_000)
    assert page.evaluate(NO_RELOAD)
    assert page.locator('.selfie-group[data-group="accepted"] .thumb').count() == GOOD_PHOTOS
    rejected = page.locator('.selfie-group[data-group="rejected"]')
    assert rejected.locator(".badge").inner_text() == "More than one face"
    assert "faces of similar size" in rejected.inner_text()
    assert page.locator("#reference-face").is_visible()
    assert page.locator("#twin-stepper .current").inner_text() == "Generate photos"
    # The generate form arrives without a reload.
    page.wait_for_selector("#generate-panel form.generate-form")
    assert page.evaluate(NO_RELOAD)
    check_page(page)
    shots.take(page, "ready")

    # Generate: a preset idea chosen with the keyboard, advanced settings, submit.
    page.focus("[data-preset] >> nth=0")
    page.keyboard.press("Enter")
    prompt = page.locator("#id_prompt")
    assert prompt.input_value().startswith("studio portrait photo")
    assert page.locator("[data-preset] >> nth=0").get_attribute("aria-pressed") == "true"
    assert prompt.evaluate("el => el === document.activeElement")
    page.select_option("#id_num_images", "4")
    page.click("details.advanced summary")
    page.fill("#id_steps", str(STEPS))
    page.fill("#id_seed", "7")
    shots.take(page, "generate-form")
    page.click("#generate-panel button[type=submit]")
    page.wait_for_url(re.compile(r"/generations/\d+/$"))
    first = GenerationJob.objects.get(owner=twin.owner)
    assert (first.steps, first.num_images, first.seed) == (STEPS, 4, 7)

    # Live progress: step count and an ETA, without reloading.
    page.evaluate("window.__stillTheSamePage = true")
    page.wait_for_function(
        "document.querySelector('[data-field=detail]').textContent.startsWith('Step ')", timeout=60_000
    )
    page.wait_for_function("document.querySelector('[data-field=eta]').textContent.startsWith('~')")
    assert re.match(r"Step \d+ of \d+", page.locator("[data-field=detail]").inner_text())
    assert re.match(r"\d+ / \d+", page.locator("[data-field=step]").inner_text())
    shots.take(page, "running")

    # A second generation while the worker is busy: it waits, shows its place in the queue, and is cancelled.
    second_page = context.new_page()
    second_page.goto(f"{url}/twins/{twin.pk}/generate/new/?from={first.pk}")
    assert second_page.locator("#id_prompt").input_value() == first.prompt  # "Generate more like this"
    assert "images left today" in second_page.locator("#quota-hint").inner_text()
    second_page.select_option("#id_num_images", "1")
    second_page.click("main button[type=submit]")
    second_page.wait_for_url(re.compile(r"/generations/\d+/$"))
    assert second_page.locator("[data-field=status]").inner_text() == "Queued"
    second_page.wait_for_function(
        "document.querySelector('[data-field=detail]').textContent.startsWith('Next in the queue')"
    )
    assert second_page.locator("[data-field=queue]").inner_text() == "1"
    shots.take(second_page, "queued")
    second_page.get_by_role("button", name="Cancel").click()
    second_page.wait_for_selector("[data-field=status].cancelled")
    assert second_page.locator("[data-field=cancelled]").is_visible()
    shots.take(second_page, "cancelled")
    second_page.close()

    # The first one finishes on the page that was left open: the gallery appears in place.
    page.wait_for_selector("[data-field=status].succeeded", timeout=120_000)
    assert page.evaluate(NO_RELOAD)
    gallery = page.locator("[data-field=gallery] figure")
    assert gallery.count() == 4
    for index in range(4):
        badge = gallery.nth(index).locator(".badge").inner_text()
        assert re.fullmatch(r"ID -?\d\.\d\d|No face", badge), badge
    page.wait_for_function(
        "[...document.querySelectorAll('[data-field=gallery] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    check_page(page)
    shots.take(page, "gallery")

    # Lightbox, by keyboard: Enter opens, arrows move, Escape closes and gives focus back.
    page.focus("[data-field=gallery] img >> nth=0")
    page.keyboard.press("Enter")
    lightbox = page.locator("#lightbox")
    assert lightbox.is_visible()
    assert page.locator("[data-lb-caption]").inner_text().startswith("Photo 1 of 4")
    page.keyboard.press("ArrowRight")
    assert page.locator("[data-lb-caption]").inner_text().startswith("Photo 2 of 4")
    shots.take(page, "lightbox", full_page=False)  # the dialog covers the window, not the whole page
    page.keyboard.press("Escape")
    assert lightbox.is_hidden()
    assert page.evaluate("document.activeElement.matches('[data-field=gallery] img')")

    # Download one photo, then all of them as a zip.
    with page.expect_download() as download_info:
        gallery.nth(0).locator("text=Download").click()
    download = download_info.value
    assert download.suggested_filename == "avatar_001.png"
    assert download.path().read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with page.expect_download() as zip_info:
        page.click("text=Download all (zip)")
    with zipfile.ZipFile(io.BytesIO(zip_info.value.path().read_bytes())) as archive:
        assert archive.namelist() == [f"avatar_00{n}.png" for n in range(1, 5)]

    # Delete one photo (after confirming).
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[aria-label='Delete photo 4']")
    page.wait_for_selector("text=avatar_004.png was deleted.")
    assert page.locator("[data-field=gallery] figure").count() == 3
    shots.take(page, "photo-deleted")

    # History: both jobs, newest first.
    page.click("nav >> text=History")
    rows = page.locator("#history tbody tr")
    assert rows.count() == 2
    assert rows.nth(0).locator(".badge").inner_text() == "Cancelled"
    assert rows.nth(1).locator(".badge").inner_text() == "Succeeded"
    assert rows.nth(1).locator(".mini-thumbs img").count() == 3
    check_page(page)
    shots.take(page, "history")

    # Every page again at phone width: nothing sticks out sideways.
    page.set_viewport_size(PHONE)
    for path, name in [
        ("/", "dashboard"),
        (f"/twins/{twin.pk}/", "twin"),
        (f"/twins/{twin.pk}/generate/new/", "generate"),
        (f"/generations/{first.pk}/", "job"),
        ("/generations/", "history"),
        ("/settings/", "settings"),
    ]:
        page.goto(url + path)
        assert_fits_width(page)
        check_page(page)
        shots.take(page, f"phone-{name}")

    assert unexpected(errors) == []
