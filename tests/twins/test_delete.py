"""Erasing a twin removes every row and every file of it, from the database and from storage."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from generation.models import GeneratedImage, GenerationJob
from tests.factories import GenerationJobFactory, TwinFactory
from tests.twins.conftest import photos
from twins import services
from twins.models import Selfie, Twin


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 20, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def _everything_under(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob("*")]


@pytest.fixture
def full_twin(twin, lfw, add_photos, enroll, settings) -> Twin:
    """A ready twin with selfies, a reference face, a generation job with images, and an orphan file."""
    settings.TWIN_MIN_PHOTOS = 5
    add_photos(twin, photos(lfw / "george_w_bush", 6))
    enroll(twin)
    assert twin.status == Twin.Status.READY and twin.reference_face
    job = GenerationJobFactory(twin=twin, status=GenerationJob.Status.SUCCEEDED, num_images=2)
    for index in range(2):
        image = GeneratedImage(job=job, index=index, seed=job.seed + index, width=64, height=64)
        image.file.save(image.filename, ContentFile(_png()), save=True)
    # A file whose row was lost (say, a crash between storage and database): the prefix sweep finds it.
    default_storage.save(f"twins/{twin.storage_key}/selfies/orphan.jpg", ContentFile(b"x"))
    return twin


def test_delete_twin_erases_rows_and_every_file(full_twin, alice, media_root, django_capture_on_commit_callbacks):
    key = str(full_twin.storage_key)
    other = TwinFactory(owner=alice, name="Keep me")
    kept = default_storage.save(f"twins/{other.storage_key}/selfies/keep.jpg", ContentFile(b"keep"))
    assert any(key in path for path in _everything_under(media_root))

    with django_capture_on_commit_callbacks(execute=True):
        services.delete_twin(twin=full_twin)

    leftovers = [path for path in _everything_under(media_root) if key in path]
    assert leftovers == []
    assert not Twin.objects.filter(pk=full_twin.pk).exists()
    assert not Selfie.objects.filter(twin_id=full_twin.pk).exists()
    assert not GenerationJob.objects.filter(twin_id=full_twin.pk).exists()
    assert not GeneratedImage.objects.exists()
    assert (media_root / kept).exists()  # another twin's files are untouched


def test_files_are_deleted_only_after_commit(full_twin, media_root, django_capture_on_commit_callbacks):
    key = str(full_twin.storage_key)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        services.delete_twin(twin=full_twin)
    assert any(key in path for path in _everything_under(media_root))  # not yet: the rows could roll back
    assert len(callbacks) == 1


def test_api_delete_answers_204_and_the_twin_is_gone(
    api_alice, full_twin, media_root, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_alice.delete(f"/api/twins/{full_twin.pk}/")
    assert response.status_code == 204
    assert api_alice.get(f"/api/twins/{full_twin.pk}/").status_code == 404
    assert not [p for p in _everything_under(media_root) if str(full_twin.storage_key) in p]


def test_enrollment_of_an_erased_twin_stops_quietly(
    twin, lfw, add_photos, media_root, django_capture_on_commit_callbacks
):
    add_photos(twin, photos(lfw / "george_w_bush", 3))
    services.start_enrollment(twin=twin, enqueue=False)
    erased = {}

    def erase_midway(done: int, total: int) -> None:
        if done == 1:
            with django_capture_on_commit_callbacks(execute=True):
                services.delete_twin(twin=Twin.objects.get(pk=twin.pk))
            erased["yes"] = True

    result = services.enroll_twin(twin=twin, on_progress=erase_midway)
    assert erased and not result.ran
    assert not [p for p in _everything_under(media_root) if str(twin.storage_key) in p]
