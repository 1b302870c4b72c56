from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from django.test import Client
from PIL import Image
from rest_framework.test import APIClient

from generation.models import GeneratedImage, GenerationJob
from tests.factories import GenerationJobFactory, TwinFactory


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 100, 50)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def twin(alice):
    return TwinFactory(owner=alice, ready=True)


@pytest.fixture
def finished_job(twin):
    job = GenerationJobFactory(twin=twin, status=GenerationJob.Status.SUCCEEDED, num_images=2)
    for index in range(2):
        image = GeneratedImage(job=job, index=index, seed=job.seed + index, identity_score=0.61, width=64, height=64)
        image.file.save(image.filename, ContentFile(_png()), save=True)
    return job


def test_submit_answers_202_with_status_and_progress(api_alice, twin):
    response = api_alice.post(
        "/api/generations/", {"twin": twin.pk, "prompt": "studio portrait", "num_images": 3}, format="json"
    )
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "queued"
    assert body["num_images"] == 3
    assert body["progress"] == {"step": 0, "total": body["steps"], "fraction": 0.0}
    assert body["queue_position"] == 1
    assert body["images"] == []


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"prompt": "x"}, 400, "invalid"),
        ({"twin": 1, "prompt": ""}, 400, "invalid"),
        ({"twin": 1, "prompt": "x", "num_images": 7}, 400, "invalid"),
        ({"twin": 1, "prompt": "x" * 100_000}, 400, "invalid"),
        ({"twin": 1, "prompt": "x", "steps": "many"}, 400, "invalid"),
    ],
)
def test_bad_requests_are_json_errors(api_alice, twin, payload, status, code):
    if "twin" in payload:
        payload["twin"] = twin.pk
    response = api_alice.post("/api/generations/", payload, format="json")
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_a_twin_that_is_not_ready_is_409(api_alice, alice):
    draft = TwinFactory(owner=alice)
    response = api_alice.post("/api/generations/", {"twin": draft.pk, "prompt": "x"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "twin_not_ready"


def test_quota_is_429(api_alice, twin, settings):
    settings.GENERATION_MAX_CONCURRENT_JOBS = 1
    assert api_alice.post("/api/generations/", {"twin": twin.pk, "prompt": "x"}, format="json").status_code == 202
    response = api_alice.post("/api/generations/", {"twin": twin.pk, "prompt": "x"}, format="json")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "quota_exceeded"


def test_list_is_paginated_and_scoped_to_the_owner(api_alice, api_bob, finished_job):
    body = api_alice.get("/api/generations/").json()
    assert body["count"] == 1
    assert body["results"][0]["id"] == finished_job.pk
    assert api_bob.get("/api/generations/").json()["count"] == 0


def test_detail_shows_images_with_urls_and_scores(api_alice, finished_job):
    body = api_alice.get(f"/api/generations/{finished_job.pk}/").json()
    assert [i["filename"] for i in body["images"]] == ["avatar_001.png", "avatar_002.png"]
    assert body["images"][0]["identity_score"] == pytest.approx(0.61)
    image = api_alice.get(body["images"][1]["url"])
    assert image.status_code == 200
    assert image["Content-Type"] == "image/png"
    assert b"".join(image.streaming_content).startswith(b"\x89PNG")


def test_zip_holds_every_image(api_alice, finished_job):
    import zipfile

    response = api_alice.get(f"/api/generations/{finished_job.pk}/zip/")
    assert response.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert names == ["avatar_001.png", "avatar_002.png"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/generations/{id}/"),
        ("get", "/api/generations/{id}/images/1/"),
        ("get", "/api/generations/{id}/zip/"),
        ("post", "/api/generations/{id}/cancel/"),
        ("delete", "/api/generations/{id}/"),
    ],
)
def test_another_user_gets_404_and_anonymous_401(api_bob, finished_job, method, path):
    url = path.format(id=finished_job.pk)
    response = getattr(api_bob, method)(url)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert getattr(APIClient(), method)(url).status_code == 401
    assert GenerationJob.objects.filter(pk=finished_job.pk).exists()


def test_staff_can_read_anyones_job(api_charlie, finished_job):
    assert api_charlie.get(f"/api/generations/{finished_job.pk}/").status_code == 200
    assert api_charlie.get(f"/api/generations/{finished_job.pk}/images/2/").status_code == 200


def test_staff_cannot_change_anyones_job_through_the_api(api_charlie, twin, finished_job, media_root):
    # Support changes other people's data in the admin only, where it is logged (tests/generation/test_admin.py).
    running = GenerationJobFactory(twin=twin, status=GenerationJob.Status.RUNNING)
    files = sorted(media_root.rglob("*.png"))
    response = api_charlie.delete(f"/api/generations/{finished_job.pk}/")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    assert api_charlie.post(f"/api/generations/{running.pk}/cancel/").status_code == 403
    assert GenerationJob.objects.filter(pk=finished_job.pk).exists() and finished_job.images.count() == 2
    assert GenerationJob.objects.values_list("cancel_requested", flat=True).get(pk=running.pk) is False
    assert sorted(media_root.rglob("*.png")) == files


def test_missing_image_number_is_404(api_alice, finished_job):
    assert api_alice.get(f"/api/generations/{finished_job.pk}/images/3/").status_code == 404
    assert api_alice.get(f"/api/generations/{finished_job.pk}/images/0/").status_code == 404


def test_cancel_through_the_api(api_alice, twin):
    job = GenerationJobFactory(twin=twin)
    response = api_alice.post(f"/api/generations/{job.pk}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert api_alice.post(f"/api/generations/{job.pk}/cancel/").status_code == 409


def test_delete_removes_rows_and_files(api_alice, finished_job, media_root, django_capture_on_commit_callbacks):
    assert any(media_root.rglob("*.png"))
    with django_capture_on_commit_callbacks(execute=True):
        response = api_alice.delete(f"/api/generations/{finished_job.pk}/")
    assert response.status_code == 204
    assert not GenerationJob.objects.filter(pk=finished_job.pk).exists()
    assert not any((media_root / "generations").rglob("*.png"))  # the twin keeps its own reference face


def test_deleting_a_generation_or_its_last_image_leaves_no_folder(
    api_alice, alice, twin, finished_job, media_root, django_capture_on_commit_callbacks
):
    other = GenerationJobFactory(twin=twin, status=GenerationJob.Status.SUCCEEDED, num_images=2)
    for index in range(2):
        image = GeneratedImage(job=other, index=index, seed=other.seed + index, width=64, height=64)
        image.file.save(image.filename, ContentFile(_png()), save=True)
    twin_folder = media_root / "generations" / str(twin.storage_key)
    with django_capture_on_commit_callbacks(execute=True):
        assert api_alice.delete(f"/api/generations/{finished_job.pk}/").status_code == 204
    assert sorted(p.name for p in twin_folder.iterdir()) == [str(other.pk)]  # the job's emptied folder went

    page = Client()
    page.force_login(alice)
    with django_capture_on_commit_callbacks(execute=True):
        assert page.post(f"/generations/{other.pk}/images/1/delete/").status_code == 302
    assert [p.name for p in (twin_folder / str(other.pk)).iterdir()] == ["avatar_002.png"]
    with django_capture_on_commit_callbacks(execute=True):
        assert page.post(f"/generations/{other.pk}/images/2/delete/").status_code == 302
    assert not (twin_folder / str(other.pk)).exists()


def test_images_of_an_unfinished_job_are_hidden(api_alice, twin):
    job = GenerationJobFactory(twin=twin, status=GenerationJob.Status.RUNNING)
    image = GeneratedImage(job=job, index=0, seed=1, width=64, height=64)
    image.file.save(image.filename, ContentFile(_png()), save=True)
    assert api_alice.get(f"/api/generations/{job.pk}/").json()["images"] == []
    assert api_alice.get(f"/api/generations/{job.pk}/images/1/").status_code == 404


def test_openapi_schema_describes_the_generation_routes(api_alice):
    response = api_alice.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "/api/generations/" in paths
    assert "/api/generations/{id}/cancel/" in paths
