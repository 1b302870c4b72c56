"""The real queue: a `manage.py qcluster` process picks the job up from the database broker."""

from __future__ import annotations

import pytest
from django.conf import settings

from generation.models import GenerationJob
from tests.factories import TwinFactory, UserFactory
from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def gpu_worker(tmp_path, face_models):
    worker = Worker(cluster="gpu", log_path=tmp_path / "worker.log")
    yield worker
    worker.stop()


def test_a_submitted_generation_runs_on_a_real_worker(gpu_worker, face_models, media_root):
    from rest_framework.test import APIClient

    from accounts.services import get_or_create_api_token

    owner = UserFactory(username="erin")
    twin = TwinFactory(owner=owner, ready=True)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {get_or_create_api_token(user=owner).key}")

    response = client.post(
        "/api/generations/",
        {"twin": twin.pk, "prompt": "studio portrait", "num_images": 2, "steps": 3, "seed": 42},
        format="json",
    )
    assert response.status_code == 202
    job_id = response.json()["id"]

    def finished() -> bool:
        return GenerationJob.objects.get(pk=job_id).is_finished

    try:
        wait_for(finished, timeout=240, what="the worker to finish the job")
    except AssertionError:
        pytest.fail(f"job not finished; worker log:\n{gpu_worker.output()}")
    job = GenerationJob.objects.get(pk=job_id)
    assert job.status == GenerationJob.Status.SUCCEEDED, (job.error, gpu_worker.output())
    assert job.attempts == 1
    assert job.backend == settings.TWIN_BACKEND
    assert job.progress_step == job.progress_total == 3
    assert set(job.stage_seconds) >= {"generate", "score", "save"}
    images = list(job.images.order_by("index"))
    assert [image.seed for image in images] == [42, 43]
    for image in images:
        assert (media_root / image.file.name).is_file()
    body = client.get(f"/api/generations/{job_id}/").json()
    assert [image["filename"] for image in body["images"]] == ["avatar_001.png", "avatar_002.png"]
