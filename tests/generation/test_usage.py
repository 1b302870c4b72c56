"""The usage ledger: the daily image quota counts what was generated, and deleting a generation,
an image, a twin or all of one's data never gives quota back (DESIGN.md "Usage is a ledger").

Jobs are submitted through the API and run by the real worker code; only the GPU call is replaced.
"""

from __future__ import annotations

import pytest
from django.test import Client
from PIL import Image

from accounts.services import delete_user_data
from generation import pipeline
from generation.models import GenerationJob, UsageRecord
from generation.selectors import usage_of
from generation.services import run_generation
from tests.factories import TwinFactory
from twins import services as twin_services

Status = GenerationJob.Status


def _fake_gpu(*, request: pipeline.ImageRequest, on_step=None) -> list[Image.Image]:
    for done in range(1, request.steps + 1):
        if on_step is not None:
            on_step(done, request.steps)
    return [Image.new("RGB", (64, 64), (seed % 256, 90, 120)) for seed in request.seeds]


@pytest.fixture
def twin(alice, face_models, monkeypatch, settings):
    settings.GENERATION_MAX_IMAGES_PER_DAY = 4
    settings.GENERATION_MAX_CONCURRENT_JOBS = 5
    monkeypatch.setattr(pipeline, "generate_images", _fake_gpu)
    return TwinFactory(owner=alice, ready=True)


def _generate(api, twin, num_images: int) -> GenerationJob:
    response = api.post(
        "/api/generations/",
        {"twin": twin.pk, "prompt": "portrait", "num_images": num_images, "steps": 2},
        format="json",
    )
    assert response.status_code == 202, response.json()
    run_generation(job_id=response.json()["id"])
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert job.status == Status.SUCCEEDED and job.images.count() == num_images
    return job


def _settings_page_usage(user) -> str:
    client = Client()
    client.force_login(user)
    page = client.get("/settings/").content.decode()
    return page.split('data-usage="images">', 1)[1].split("<", 1)[0]


def test_deleting_a_generation_gives_no_quota_back(api_alice, alice, twin, django_capture_on_commit_callbacks):
    job = _generate(api_alice, twin, 3)
    assert usage_of(user=alice).images_last_day == 3
    with django_capture_on_commit_callbacks(execute=True):
        assert api_alice.delete(f"/api/generations/{job.pk}/").status_code == 204
    assert not GenerationJob.objects.filter(pk=job.pk).exists()

    assert usage_of(user=alice).images_last_day == 3
    assert _settings_page_usage(alice) == "3 of 4"
    response = api_alice.post("/api/generations/", {"twin": twin.pk, "prompt": "again", "num_images": 2}, format="json")
    assert response.status_code == 429 and response.json()["error"]["code"] == "quota_exceeded"
    assert "make 5 images in 24 hours; the limit is 4" in response.json()["error"]["message"]
    _generate(api_alice, twin, 1)  # what is left can still be used
    assert usage_of(user=alice).images_left == 0


@pytest.mark.parametrize("how", ["image", "twin", "my data"])
def test_deleting_images_a_twin_or_ones_data_gives_no_quota_back(
    how, api_alice, alice, twin, django_capture_on_commit_callbacks
):
    job = _generate(api_alice, twin, 3)
    with django_capture_on_commit_callbacks(execute=True):
        if how == "image":
            client = Client()
            client.force_login(alice)
            for number in (1, 2, 3):
                assert client.post(f"/generations/{job.pk}/images/{number}/delete/").status_code == 302
            assert job.images.count() == 0
        elif how == "twin":
            twin_services.delete_twin(twin=twin)
        else:
            delete_user_data(user=alice)
    assert usage_of(user=alice).images_last_day == 3
    assert _settings_page_usage(alice) == "3 of 4"


def test_failed_and_cancelled_jobs_record_nothing_and_queued_ones_count(api_alice, alice, twin, monkeypatch):
    def broken_gpu(**kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(pipeline, "generate_images", broken_gpu)
    response = api_alice.post("/api/generations/", {"twin": twin.pk, "prompt": "x", "num_images": 4}, format="json")
    assert usage_of(user=alice).images_last_day == 4  # queued: reserved
    run_generation(job_id=response.json()["id"])
    assert GenerationJob.objects.get(pk=response.json()["id"]).status == Status.FAILED
    assert usage_of(user=alice).images_last_day == 0
    assert not UsageRecord.objects.exists()


def test_deleting_the_account_deletes_its_ledger(api_alice, alice, bob, twin):
    _generate(api_alice, twin, 2)
    UsageRecord.objects.create(owner=bob, images=1)
    alice.delete()
    assert list(UsageRecord.objects.values_list("owner__username", flat=True)) == ["bob"]
