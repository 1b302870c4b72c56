"""The Settings page: token, usage against the quotas, delete my data (quick tests; the browser tests
in tests/browser/test_settings.py walk the same page in Chromium)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from accounts.services import delete_user_data, get_or_create_api_token
from generation.models import GeneratedImage, GenerationJob, UsageRecord
from generation.selectors import usage_of
from tests.conftest import PASSWORD
from tests.factories import GenerationJobFactory, TwinFactory
from twins.models import Twin

Status = GenerationJob.Status


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_usage_counts_what_the_quota_counts(alice, bob, settings):
    settings.GENERATION_MAX_IMAGES_PER_DAY = 10
    twin = TwinFactory(owner=alice, ready=True)
    GenerationJobFactory(twin=twin, num_images=3, status=Status.SUCCEEDED)
    GenerationJobFactory(twin=twin, num_images=2)  # queued
    GenerationJobFactory(twin=twin, num_images=4, status=Status.FAILED)
    GenerationJobFactory(twin=twin, num_images=4, status=Status.CANCELLED)
    old = GenerationJobFactory(twin=twin, num_images=4, status=Status.SUCCEEDED)
    # The day counts by when the images were produced: the usage ledger's time.
    UsageRecord.objects.filter(job=old).update(created_at=timezone.now() - timedelta(days=1, minutes=1))
    GenerationJobFactory(twin=TwinFactory(owner=bob, ready=True), num_images=4)

    usage = usage_of(user=alice)
    assert (usage.images_last_day, usage.images_per_day, usage.images_left, usage.images_percent) == (5, 10, 5, 50)
    assert (usage.active_jobs, usage.max_concurrent_jobs) == (1, settings.GENERATION_MAX_CONCURRENT_JOBS)


def test_settings_page_shows_token_usage_and_the_ways_out(client, alice):
    client.force_login(alice)
    GenerationJobFactory(twin=TwinFactory(owner=alice, ready=True), num_images=2, status=Status.SUCCEEDED)
    page = client.get("/settings/").content.decode()
    assert get_or_create_api_token(user=alice).key in page
    assert 'data-usage="images">2 of 200<' in page and 'data-usage="jobs">0 of 2<' in page
    assert 'href="/account/delete-data/"' in page and 'href="/account/delete/"' in page
    assert client.get("/account/token/").content.decode().count('id="api-token"') == 1  # the old address


def _twin_with_files(owner) -> Twin:
    twin = TwinFactory(owner=owner, ready=True)
    job = GenerationJobFactory(twin=twin, num_images=1, status=Status.SUCCEEDED)
    image = GeneratedImage(job=job, index=0, seed=job.seed, width=8, height=8)
    image.file.save(image.filename, ContentFile(b"png"), save=True)
    return twin


def test_delete_my_data_needs_the_password_and_keeps_the_account(
    client, alice, bob, media_root, django_capture_on_commit_callbacks
):
    mine, theirs = _twin_with_files(alice), _twin_with_files(bob)
    token = get_or_create_api_token(user=alice).key
    client.force_login(alice)
    assert "1 twin" in client.get("/account/delete-data/").content.decode()

    wrong = client.post("/account/delete-data/", {"password": "nope"})
    assert wrong.status_code == 400 and "That is not your password." in wrong.content.decode()
    assert Twin.objects.filter(pk=mine.pk).exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/account/delete-data/", {"password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Twin.objects.filter(owner=alice).exists() and not GenerationJob.objects.filter(owner=alice).exists()
    assert not (media_root / "generations" / str(mine.storage_key)).exists()
    assert (media_root / "generations" / str(theirs.storage_key)).exists()
    assert get_or_create_api_token(user=alice).key == token
    assert client.get("/settings/").status_code == 200  # still logged in


def test_delete_user_data_with_nothing_to_delete(alice):
    assert delete_user_data(user=alice) == 0


def test_generate_more_like_this_prefills_from_an_earlier_job(client, alice, bob):
    twin = TwinFactory(owner=alice, ready=True)
    job = GenerationJobFactory(
        twin=twin, prompt="cinematic film still", num_images=3, steps=12, status=Status.SUCCEEDED
    )
    client.force_login(alice)
    form = client.get(f"/twins/{twin.pk}/generate/new/?from={job.pk}").context["form"]
    initial = form.initial
    assert (initial["prompt"], initial["num_images"], initial["steps"]) == ("cinematic film still", 3, 12)
    bobs_job = GenerationJobFactory(twin=TwinFactory(owner=bob, ready=True))
    assert client.get(f"/twins/{twin.pk}/generate/new/?from={bobs_job.pk}").status_code == 404
