"""The Settings page in a real Chromium: the API token (show, rotate), usage against the quotas,
then "delete my data" and "delete my account", each behind a password confirmation."""

from __future__ import annotations

import pytest
from rest_framework.authtoken.models import Token

from accounts.models import User
from accounts.services import get_or_create_api_token
from generation.models import GenerationJob
from tests.browser.conftest import finished_generation
from tests.browser.support import PHONE, accessibility_problems, assert_fits_width, unexpected
from tests.conftest import PASSWORD
from tests.factories import GenerationJobFactory, TwinFactory, UserFactory
from twins.models import Twin

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_settings_token_usage_and_deleting_data_then_account(
    live_server, browser_page, shots, log_in, settings, media_root
):
    page, _context, errors = browser_page
    settings.GENERATION_MAX_IMAGES_PER_DAY = 10
    settings.GENERATION_MAX_CONCURRENT_JOBS = 2
    erin = UserFactory(username="erin")
    twin = TwinFactory(owner=erin, ready=True, name="Erin")
    scored = finished_generation(twin, [0.71, None, 0.24])
    GenerationJobFactory(twin=twin, num_images=2)  # queued: counts as running and against the day
    GenerationJobFactory(twin=twin, num_images=4, status=GenerationJob.Status.FAILED)  # failed: doesn't count
    old_key = get_or_create_api_token(user=erin).key
    twin_files = media_root / "generations" / str(twin.storage_key)
    assert any(twin_files.rglob("*.png"))

    log_in(page, "erin")

    # Identity-score badges, coloured by how strong the likeness is (the tiny test model draws no faces,
    # so the flow test sees only "No face"; these scores are set here).
    page.goto(f"{live_server.url}/generations/{scored.pk}/")
    badges = page.locator("[data-field=gallery] .badge")
    assert [badges.nth(i).inner_text() for i in range(3)] == ["ID 0.71", "No face", "ID 0.24"]
    assert [badges.nth(i).get_attribute("class") for i in range(3)] == ["badge ok", "badge none", "badge low"]
    shots.take(page, "identity-scores")

    page.click("nav >> text=Settings")
    page.wait_for_url(f"{live_server.url}/settings/")
    assert page.locator("[data-usage=images]").inner_text() == "5 of 10"
    assert page.locator("[data-usage=jobs]").inner_text() == "1 of 2"
    assert "5 more images can be made now" in page.locator("#usage").inner_text()

    # The token is hidden until asked for; copying needs no showing.
    token = page.locator("#api-token")
    assert old_key not in token.inner_text()
    page.click("#token-toggle")
    assert token.inner_text() == old_key
    assert page.locator("#token-toggle").get_attribute("aria-expanded") == "true"
    assert accessibility_problems(page) == []
    shots.take(page, "settings")

    # Rotate (after confirming): the old token stops working.
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Rotate token")
    page.wait_for_selector("text=A new API token was issued")
    new_key = Token.objects.get(user=erin).key
    assert new_key != old_key
    page.click("#token-toggle")
    assert page.locator("#api-token").inner_text() == new_key

    page.set_viewport_size(PHONE)
    assert_fits_width(page)
    shots.take(page, "settings-phone")
    page.set_viewport_size({"width": 1280, "height": 800})

    # Delete my data: the wrong password is refused with a message, the right one erases every twin.
    page.click("text=Delete my data…")
    assert "1 twin" in page.locator("main").inner_text() and "3 images" in page.locator("main").inner_text()
    page.fill("#id_password", "not my password")
    page.click("main button[type=submit]")
    assert page.locator(".field-error").inner_text().strip() == "That is not your password."
    assert Twin.objects.filter(owner=erin).exists()
    shots.take(page, "delete-data-wrong-password")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")
    assert "Erased 1 twin" in page.locator(".messages").inner_text()
    assert page.get_by_role("heading", name="Create your twin").is_visible()  # back to the guide
    assert not Twin.objects.filter(owner=erin).exists() and not GenerationJob.objects.filter(owner=erin).exists()
    assert not twin_files.exists() and not (media_root / "twins" / str(twin.storage_key)).exists()
    assert Token.objects.get(user=erin).key == new_key  # the account and its token stay
    shots.take(page, "data-deleted")

    # Delete my account.
    page.goto(f"{live_server.url}/settings/")
    assert "0 twins" in page.locator("main").inner_text()
    page.click("text=Delete account…")
    shots.take(page, "delete-account")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{live_server.url}/login/")
    assert "Your account was deleted" in page.locator(".messages").inner_text()
    assert not User.objects.filter(username="erin").exists()
    shots.take(page, "account-deleted")
    page.fill("#id_username", "erin")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    assert "correct username and password" in page.locator("main").inner_text()

    assert unexpected(errors, 400) == []
