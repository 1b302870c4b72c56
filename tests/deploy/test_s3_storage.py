"""STORAGE_BACKEND=s3: every file of a twin lives in a private bucket, is served only to its owner,
and is gone from the bucket when the twin is erased. Against moto's S3 server on loopback."""

from __future__ import annotations

import io
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from PIL import Image

from generation import services as generation_services
from generation.models import GeneratedImage, GenerationJob
from tests.deploy.conftest import Bucket
from tests.factories import GenerationJobFactory, TwinFactory
from twins import services as twin_services
from twins.models import Twin

pytestmark = pytest.mark.django_db


def _png(color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # the bucket itself, not Django
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_storage_is_s3_and_writes_land_in_the_private_bucket(s3: Bucket, media_root: Path):
    from django.core.files.storage import storages
    from storages.backends.s3 import S3Storage

    assert isinstance(storages["default"], S3Storage)
    assert GeneratedImage._meta.get_field("file").storage is default_storage  # what every FileField writes through
    name = default_storage.save("probe/hello.txt", ContentFile(b"hello"))
    assert s3.objects() == [name]
    assert s3.read(name) == b"hello"
    assert not any(media_root.rglob("*"))  # nothing on local disk
    status, _ = _get(f"{s3.client.meta.endpoint_url}/{s3.name}/{name}")
    assert status == 403  # private: no anonymous reads
    # The same name twice gets a new key, never overwrites (file_overwrite=False).
    assert default_storage.save("probe/hello.txt", ContentFile(b"again")) != name


def test_erasing_a_twin_empties_its_prefixes_in_the_bucket(s3: Bucket, alice, django_capture_on_commit_callbacks):
    twin = TwinFactory(owner=alice, ready=True)
    other = TwinFactory(owner=alice, ready=True)
    job = GenerationJobFactory(twin=twin, status=GenerationJob.Status.SUCCEEDED, num_images=2)
    for index in range(2):
        image = GeneratedImage(job=job, index=index, seed=job.seed + index, width=64, height=64)
        image.file.save(image.filename, ContentFile(_png()), save=True)
    # Its reference face is the one TwinFactory(ready=True) wrote, as an enrollment would.
    key = twin.storage_key
    # Files no row points at: a crash between storage and database leaves such; the prefix sweep must find them,
    # however deep (S3 has no folders, only keys; listdir groups them by "/").
    s3.put(f"twins/{key}/selfies/orphan.jpg", b"x")
    s3.put(f"twins/{key}/selfies/deeper/still/orphan.jpg", b"x")
    s3.put(f"generations/{key}/999999/avatar_001.png", b"x")
    kept = [f"twins/{other.storage_key}/selfies/keep.jpg", f"generations/{other.storage_key}/1/avatar_001.png"]
    for name in list(kept):
        s3.put(name, b"keep")
    assert len([k for k in s3.objects() if str(key) in k]) == 6

    with django_capture_on_commit_callbacks(execute=True):
        twin_services.delete_twin(twin=twin)

    kept.append(other.reference_face.name)  # the other twin's reference face (TwinFactory(ready=True) wrote it)
    assert s3.objects() == sorted(kept)  # the other twin's files are untouched


@pytest.mark.slow
def test_upload_enroll_generate_download_erase_on_s3(
    s3: Bucket,
    settings,
    face_models,
    faces_dir,
    alice,
    bob,
    api_alice,
    api_bob,
    client,
    django_capture_on_commit_callbacks,
):
    settings.SELFIE_MIN_SIDE = 200  # the staged photos are 250x250
    settings.TWIN_MIN_PHOTOS = 5
    settings.TWIN_BACKEND = "tiny"

    # Upload through the API: the web process writes straight to the bucket.
    twin_id = api_alice.post("/api/twins/", {"name": "Alice on S3"}, format="json").json()["id"]
    photos = sorted((faces_dir / "george_w_bush").glob("*.jpg"))[:6]
    files = [open(path, "rb") for path in photos]  # noqa: SIM115 - closed below
    try:
        response = api_alice.post(f"/api/twins/{twin_id}/selfies/", {"files": files}, format="multipart")
    finally:
        for handle in files:
            handle.close()
    assert response.status_code in (200, 201), response.content
    twin = Twin.objects.get(pk=twin_id)
    selfie_keys = s3.objects(f"twins/{twin.storage_key}/selfies/")
    assert len(selfie_keys) == 6 == twin.selfies.count()
    assert sorted(twin.selfies.values_list("image", flat=True)) == selfie_keys

    # Enrollment: the API queues it, the worker's service reads the photos back from the bucket.
    assert api_alice.post(f"/api/twins/{twin_id}/enroll/").status_code == 202
    twin_services.enroll_twin(twin=twin)
    twin.refresh_from_db()
    assert twin.status == Twin.Status.READY, twin.status_message
    assert s3.objects(f"twins/{twin.storage_key}/reference/") == [twin.reference_face.name]

    # Generation: submitted through the API, run by the worker's service, outputs written to the bucket.
    response = api_alice.post(
        "/api/generations/",
        {"twin": twin_id, "prompt": "studio portrait", "num_images": 2, "steps": 2, "seed": 7},
        format="json",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    generation_services.run_generation(job_id=job_id)
    job = GenerationJob.objects.get(pk=job_id)
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error
    output_keys = s3.objects(f"generations/{twin.storage_key}/{job_id}/")
    assert output_keys == sorted(job.images.values_list("file", flat=True))
    assert len(output_keys) == 2

    # Download: the authenticated view streams the object from the bucket, to the owner only.
    response = api_alice.get(f"/api/generations/{job_id}/images/1/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == s3.read(job.images.get(index=0).file.name)
    assert api_bob.get(f"/api/generations/{job_id}/images/1/").status_code == 404
    with zipfile.ZipFile(io.BytesIO(api_alice.get(f"/api/generations/{job_id}/zip/").content)) as archive:
        assert archive.namelist() == ["avatar_001.png", "avatar_002.png"]

    # Selfies: a thumbnail is made from the bucket; the full photo is a redirect to a short-lived signed URL.
    selfie = twin.selfies.order_by("pk").first()
    client.force_login(alice)
    thumb = client.get(f"/twins/{twin_id}/selfies/{selfie.pk}/image?size=thumb")
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    full = client.get(f"/twins/{twin_id}/selfies/{selfie.pk}/image")
    assert full.status_code == 302
    signed = urllib.parse.urlsplit(full["Location"])
    query = urllib.parse.parse_qs(signed.query)
    assert "Signature" in query or "X-Amz-Signature" in query
    expires = int(query["Expires"][0]) if "Expires" in query else None
    if expires is not None:  # SigV2 query auth: an absolute expiry time
        assert (
            0
            < expires - timezone.now().timestamp()
            <= settings.STORAGES["default"]["OPTIONS"]["querystring_expire"] + 5
        )
    else:  # SigV4: a lifetime
        assert int(query["X-Amz-Expires"][0]) == settings.STORAGES["default"]["OPTIONS"]["querystring_expire"]
    assert _get(full["Location"]) == (200, s3.read(selfie.image.name))
    assert _get(full["Location"].split("?")[0])[0] == 403  # without the signature: refused
    client.force_login(bob)
    assert client.get(f"/twins/{twin_id}/selfies/{selfie.pk}/image").status_code == 404

    # Erase: every object of the twin leaves the bucket.
    assert any(str(twin.storage_key) in key for key in s3.objects())
    with django_capture_on_commit_callbacks(execute=True):
        assert api_alice.delete(f"/api/twins/{twin_id}/").status_code == 204
    assert [key for key in s3.objects() if str(twin.storage_key) in key] == []
    assert not GeneratedImage.objects.filter(job_id=job_id).exists()


@pytest.mark.slow
def test_a_restarted_job_discards_what_the_dead_attempt_left_in_the_bucket(s3: Bucket, settings, face_models, alice):
    """A worker died mid-job: the restart lists the job's prefix on S3 and never duplicates images."""
    settings.TWIN_BACKEND = "tiny"
    job = GenerationJobFactory(
        twin=TwinFactory(owner=alice, ready=True),
        status=GenerationJob.Status.RUNNING,
        num_images=1,
        steps=2,
        attempts=1,
    )
    stale = timezone.now() - timedelta(seconds=settings.GENERATION_STALE_AFTER_S + 60)
    GenerationJob.objects.filter(pk=job.pk).update(started_at=stale, heartbeat_at=stale)
    prefix = f"generations/{job.twin.storage_key}/{job.pk}/"
    s3.put(f"{prefix}avatar_001.png", _png((200, 0, 0)))  # written by the dead attempt, no row
    s3.put(f"{prefix}avatar_001_AbCdEfG.png", _png((0, 200, 0)))

    generation_services.run_generation(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error
    assert job.attempts == 2
    assert s3.objects(prefix) == [job.images.get().file.name]
