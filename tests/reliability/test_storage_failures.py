"""Storage full or unwritable: uploads are all-or-nothing with a clear answer, jobs fail with a
message, and nothing half-written stays on disk or referenced (each test scans MEDIA_ROOT).

"Unwritable" is real: MEDIA_ROOT under a regular file, so the kernel refuses the directory (these
tests run as root in CI, where permission bits would not stop a write). "Full" is a storage that
writes until its capacity and then fails the way a full disk does, halfway through a file, with
ENOSPC: a disk can't be filled safely on a shared machine.
"""

from __future__ import annotations

import errno
import io
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from PIL import Image

from generation import services as generation_services
from generation.models import GeneratedImage, GenerationJob
from tests.factories import GenerationJobFactory, TwinFactory
from tests.reliability.support import assert_storage_matches_database, multipart, stored_files
from tests.twins.images import image_bytes, photo_upload, upload
from twins import intake
from twins import services as twin_services
from twins.models import Selfie, Twin


class FillingStorage(FileSystemStorage):
    """Local storage with a byte budget: the write that crosses it stops halfway with ENOSPC."""

    def __init__(self, *, capacity: int, **kwargs: object):
        super().__init__(**kwargs)
        self.capacity = capacity
        self.used = 0

    def _save(self, name: str, content) -> str:
        data = content.read()
        if self.used + len(data) <= self.capacity:
            self.used += len(data)
            return super()._save(name, ContentFile(data))
        path = Path(self.path(name))
        path.parent.mkdir(parents=True, exist_ok=True)
        room = max(self.capacity - self.used, 0)
        path.write_bytes(data[: max(room, len(data) // 2)])  # what got out before the disk filled up
        self.used = self.capacity
        raise OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.fixture
def disk_full(settings):
    """Switch the default storage to one that holds `capacity` more bytes."""

    def _fill(capacity: int) -> None:
        settings.STORAGES = {
            **settings.STORAGES,
            "default": {"BACKEND": f"{__name__}.FillingStorage", "OPTIONS": {"capacity": capacity}},
        }

    return _fill


@pytest.fixture
def unwritable(settings, tmp_path) -> Path:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the media folder should be")
    settings.MEDIA_ROOT = blocker / "media"
    return blocker


def _photos(count: int) -> list[tuple[str, str, bytes]]:
    return [("files", f"p{i}.jpg", image_bytes(color=(i * 20, 90, 60))) for i in range(count)]


def test_upload_that_fills_the_disk_midway_keeps_nothing_and_says_why(api_alice, alice, disk_full, media_root):
    twin = TwinFactory(owner=alice)
    files = _photos(5)
    one = len(intake.prepare_selfie(upload=upload("x.jpg", files[0][2])).content)
    disk_full(int(one * 2.5))  # two fit, the third stops halfway
    body, content_type = multipart(files)
    response = api_alice.post(f"/api/twins/{twin.pk}/selfies/", data=body, content_type=content_type)

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "storage_unavailable"
    assert (
        "storage is full or not writable" in error["message"]
        and "Nothing from this upload was kept" in (error["message"])
    )
    assert not Selfie.objects.exists()
    assert stored_files(media_root) == set()  # the two whole files and the half one are gone
    twin.refresh_from_db()
    assert twin.photo_count == 0

    disk_full(10**9)  # space again: the same upload goes through whole
    response = api_alice.post(f"/api/twins/{twin.pk}/selfies/", data=body, content_type=content_type)
    assert response.status_code == 201
    assert response.json()["accepted"] == 5
    assert_storage_matches_database(media_root)


@pytest.mark.parametrize("route", ["api", "compat", "dashboard"])
def test_upload_to_unwritable_storage_is_a_clear_error_on_every_route(route, api_alice, alice, client, unwritable):
    twin = TwinFactory(owner=alice)
    body, content_type = multipart(_photos(3), fields={"name": "Unwritable"})
    if route == "dashboard":
        client.force_login(alice)
        response = client.post(f"/twins/{twin.pk}/upload/", data=body, content_type=content_type, follow=True)
        assert response.status_code == 200
        assert b"storage is full or not writable" in response.content
    else:
        path = f"/api/twins/{twin.pk}/selfies/" if route == "api" else "/upload"
        response = api_alice.post(path, data=body, content_type=content_type)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "storage_unavailable"
    assert not Selfie.objects.exists()
    assert Twin.objects.filter(owner=alice).count() == 1  # /upload made no twin either
    assert not any(p.is_file() for p in unwritable.parent.rglob("*") if p != unwritable)


def _drawn_images(count: int) -> list[Image.Image]:
    return [Image.fromarray(np.full((64, 64, 3), 40 * (i + 1), dtype=np.uint8)) for i in range(count)]


@pytest.fixture
def job(alice, face_models) -> GenerationJob:
    twin = TwinFactory(owner=alice, ready=True)
    return GenerationJobFactory(twin=twin, owner=alice, num_images=3, steps=2, status=GenerationJob.Status.QUEUED)


@pytest.fixture
def gpu_boundary(monkeypatch):
    """The pipeline itself (the GPU) answers with drawn images; everything around it is real."""
    from generation import pipeline

    def fake_generate_images(*, request, on_step=None):
        for step in range(1, request.steps + 1):
            if on_step:
                on_step(step, request.steps)
        return _drawn_images(len(request.seeds))

    monkeypatch.setattr(pipeline, "generate_images", fake_generate_images)
    monkeypatch.setattr(pipeline, "run_record", lambda: {"backend": "test"})


def test_generation_that_fills_the_disk_fails_with_a_message_and_keeps_no_image(
    job, gpu_boundary, disk_full, media_root
):
    buffer = io.BytesIO()
    _drawn_images(1)[0].save(buffer, format="PNG")
    disk_full(int(len(buffer.getvalue()) * 1.5))  # the first image fits, the second stops halfway
    generation_services.run_generation(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert "storage is full or not writable" in job.error and "Nothing was kept" in job.error
    assert not GeneratedImage.objects.filter(job=job).exists()
    assert stored_files(media_root) == {job.twin.reference_face.name}  # only the twin's reference face


def test_generation_with_unwritable_storage_fails_with_a_message(job, gpu_boundary, unwritable):
    generation_services.run_generation(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.FAILED
    assert "could not be saved" in job.error
    assert not GeneratedImage.objects.filter(job=job).exists()


def test_generation_succeeds_again_once_there_is_room(job, gpu_boundary, disk_full, media_root):
    disk_full(10**9)
    generation_services.run_generation(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error
    assert job.images.count() == 3
    assert_storage_matches_database(media_root)


def test_enrollment_that_cannot_store_the_reference_face_fails_cleanly(
    alice, settings, face_models, faces_dir, disk_full, media_root
):
    settings.SELFIE_MIN_SIDE = 200
    settings.TWIN_MIN_PHOTOS = 3
    twin = TwinFactory(owner=alice)
    twin_services.add_selfies(
        twin=twin, uploads=[photo_upload(p) for p in sorted((faces_dir / "george_w_bush").glob("*.jpg"))[:4]]
    )
    selfie_files = stored_files(media_root)
    disk_full(10)  # the reference face crop can't be written
    twin_services.start_enrollment(twin=twin, enqueue=False)
    result = twin_services.enroll_twin(twin=twin)

    twin.refresh_from_db()
    assert result.status == Twin.Status.FAILED and twin.status == Twin.Status.FAILED
    assert "storage is full or not writable" in twin.status_message
    assert twin.embedding is None and not twin.reference_face
    assert set(twin.selfies.values_list("status", flat=True)) == {Selfie.Status.PENDING}  # verdicts rolled back
    assert stored_files(media_root) == selfie_files  # no half-written crop
    assert_storage_matches_database(media_root)
