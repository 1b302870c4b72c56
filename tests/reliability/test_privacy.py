"""Privacy: erasing a twin or an account leaves nothing behind (rows or files, scanned), embeddings
never leave the server (API, pages, logs), raw selfies expire under the retention setting while
the twin keeps working, and stored images carry no EXIF or GPS."""

from __future__ import annotations

import base64
import io
import logging
import re
from datetime import timedelta

import numpy as np
import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.files.base import ContentFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule
from PIL import Image
from rest_framework.authtoken.models import Token

from accounts.models import User
from generation import services as generation_services
from generation.models import GeneratedImage, GenerationJob
from tests.conftest import PASSWORD
from tests.factories import GenerationJobFactory, TwinFactory, unit_vector
from tests.reliability.support import assert_storage_matches_database, stored_files
from tests.twins.images import image_bytes, jpeg_with_exif, photo_upload, upload
from twins import services as twin_services
from twins.models import Selfie, Twin
from twinsite.logging import JsonFormatter


def _png(color: tuple[int, int, int] = (200, 100, 50)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return buffer.getvalue()


def full_twin(owner: User, name: str = "Full", *, seed: int = 0) -> Twin:
    """A ready twin with everything a person leaves: selfies (with per-photo embeddings), a reference
    face crop, an identity embedding, a finished generation with images."""
    twin = TwinFactory(owner=owner, name=name, ready=True, embedding=unit_vector(seed=seed).tobytes())
    # Its reference face is the one TwinFactory(ready=True) wrote, as an enrollment would.
    result = twin_services.add_selfies(
        twin=twin,
        uploads=[upload(f"{name}{i}.jpg", image_bytes(color=(seed * 30 % 256, i * 40, 90))) for i in range(3)],
    )
    for n, outcome in enumerate(result.accepted):
        Selfie.objects.filter(pk=outcome.selfie.pk).update(
            status=Selfie.Status.ACCEPTED, embedding=unit_vector(seed=seed * 10 + n + 1).tobytes()
        )
    job = GenerationJobFactory(twin=twin, owner=owner, status=GenerationJob.Status.SUCCEEDED, num_images=2)
    for index in range(2):
        image = GeneratedImage(job=job, index=index, seed=job.seed + index, width=64, height=64)
        image.file.save(image.filename, ContentFile(_png((index, 0, 0))), save=True)
    return twin


def _rows_of(twin_id: int) -> dict[str, int]:
    return {
        "twins": Twin.objects.filter(pk=twin_id).count(),
        "selfies": Selfie.objects.filter(twin_id=twin_id).count(),
        "jobs": GenerationJob.objects.filter(twin_id=twin_id).count(),
        "images": GeneratedImage.objects.filter(job__twin_id=twin_id).count(),
    }


def _files_of(media_root, twin: Twin) -> set[str]:
    return {f for f in stored_files(media_root) if str(twin.storage_key) in f}


@pytest.mark.parametrize("how", ["api", "page", "admin"])
def test_erasing_a_twin_removes_its_rows_and_files(
    how, alice, bob, charlie, api_alice, client, media_root, django_capture_on_commit_callbacks
):
    twin, kept, other = full_twin(alice, "Erase", seed=1), full_twin(alice, "Keep", seed=2), full_twin(bob, seed=3)
    assert len(_files_of(media_root, twin)) == 6  # 3 selfies, the crop, 2 generated images
    with django_capture_on_commit_callbacks(execute=True):
        if how == "api":
            assert api_alice.delete(f"/api/twins/{twin.pk}/").status_code == 204
        elif how == "page":
            client.force_login(alice)
            assert client.post(reverse("twin-delete", kwargs={"twin_id": twin.pk})).status_code == 302
        else:
            client.force_login(charlie)
            response = client.post(
                reverse("admin:twins_twin_changelist"), {"action": "erase_twins", ACTION_CHECKBOX_NAME: [twin.pk]}
            )
            assert response.status_code == 302
    assert _rows_of(twin.pk) == {"twins": 0, "selfies": 0, "jobs": 0, "images": 0}
    assert _files_of(media_root, twin) == set()
    assert not (media_root / "twins" / str(twin.storage_key)).exists()
    assert len(_files_of(media_root, kept)) == 6 and len(_files_of(media_root, other)) == 6
    assert_storage_matches_database(media_root)


@pytest.mark.parametrize("how", ["page", "admin"])
def test_deleting_an_account_removes_every_trace(
    how, alice, bob, charlie, client, media_root, django_capture_on_commit_callbacks
):
    twins = [full_twin(alice, "One", seed=1), full_twin(alice, "Two", seed=2)]
    full_twin(bob, seed=3)
    token = Token.objects.create(user=alice).key
    with django_capture_on_commit_callbacks(execute=True):
        if how == "page":
            client.force_login(alice)
            wrong = client.post(reverse("account-delete"), {"password": "not it"})
            assert wrong.status_code == 400 and User.objects.filter(pk=alice.pk).exists()
            response = client.post(reverse("account-delete"), {"password": PASSWORD})
            assert response.status_code == 302 and response["Location"] == reverse("login")
            assert client.get(reverse("dashboard")).status_code == 302  # logged out
        else:
            client.force_login(charlie)
            response = client.post(reverse("admin:accounts_user_delete", args=[alice.pk]), {"post": "yes"})
            assert response.status_code == 302
    assert not User.objects.filter(pk=alice.pk).exists()
    for twin in twins:
        assert _rows_of(twin.pk) == {"twins": 0, "selfies": 0, "jobs": 0, "images": 0}
        assert _files_of(media_root, twin) == set()
    assert not GenerationJob.objects.filter(owner_id=alice.pk).exists()
    assert not Token.objects.filter(key=token).exists()
    assert Twin.objects.filter(owner=bob).count() == 1
    assert_storage_matches_database(media_root)  # only bob's files are left, all referenced


# --- embeddings stay inside ---------------------------------------------------------------------


def _find_leaks(text: bytes, vectors: list[np.ndarray]) -> list[str]:
    """Ways an embedding could show up in text: raw bytes, base64, hex, or its numbers printed.

    Numbers: every decimal number in the text against the vector's six largest components, to
    within rounding at 5 decimals; three of one vector is a leak, one alone could be a coincidence.
    """
    printed = np.array([float(x) for x in re.findall(rb"-?\d+\.\d{5,}", text)], dtype=np.float64)
    leaks = []
    for n, vector in enumerate(vectors):
        raw = vector.astype(np.float32).tobytes()
        for label, pattern in (
            ("base64", base64.b64encode(raw)[:24]),
            ("hex", raw.hex()[:24].encode()),
            ("raw", raw[:16]),
        ):
            if pattern in text:
                leaks.append(f"vector {n} as {label}")
        top = sorted(vector, key=abs, reverse=True)[:6]
        close = [c for c in top if np.any(np.abs(printed - c) < 6e-6)] if printed.size else []
        if len(close) >= 3:
            leaks.append(f"vector {n} as numbers {close}")
    return leaks


@pytest.fixture
def enrolled(alice, settings, face_models, faces_dir) -> Twin:
    settings.SELFIE_MIN_SIDE = 200
    settings.TWIN_MIN_PHOTOS = 3
    twin = TwinFactory(owner=alice, name="Real")
    twin_services.add_selfies(
        twin=twin, uploads=[photo_upload(p) for p in sorted((faces_dir / "george_w_bush").glob("*.jpg"))[:4]]
    )
    twin_services.start_enrollment(twin=twin, enqueue=False)
    twin_services.enroll_twin(twin=twin)
    twin.refresh_from_db()
    assert twin.status == Twin.Status.READY, twin.status_message
    return twin


def test_embeddings_never_appear_in_api_output_pages_or_logs(
    enrolled, alice, charlie, api_alice, client, caplog, monkeypatch, settings, faces_dir
):
    caplog.set_level(logging.DEBUG)
    twin_services.start_enrollment(twin=enrolled, enqueue=False)  # again, now that every log line is captured
    twin_services.enroll_twin(twin=enrolled)
    enrolled.refresh_from_db()
    vectors = [np.frombuffer(bytes(enrolled.embedding), dtype=np.float32)]
    vectors += [
        np.frombuffer(bytes(e), dtype=np.float32)
        for e in enrolled.selfies.exclude(embedding=None).values_list("embedding", flat=True)
    ]
    assert len(vectors) >= 4

    # A generation runs too (its logs and scores), the GPU answering with a real photo.
    from generation import pipeline

    photo = Image.open(sorted((faces_dir / "george_w_bush").glob("*.jpg"))[5]).convert("RGB")
    monkeypatch.setattr(pipeline, "generate_images", lambda *, request, on_step=None: [photo] * len(request.seeds))
    job = GenerationJobFactory(twin=enrolled, owner=alice, num_images=1, steps=2)
    generation_services.run_generation(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error

    selfie = enrolled.selfies.first()
    bodies = [
        api_alice.get(path).content
        for path in (
            "/api/twins/",
            f"/api/twins/{enrolled.pk}/",
            f"/api/twins/{enrolled.pk}/selfies/{selfie.pk}/",
            "/api/generations/",
            f"/api/generations/{job.pk}/",
            f"/status/twin-{enrolled.pk}",
            f"/status/{job.pk}",
            "/jobs",
            "/api/schema/",
        )
    ]
    client.force_login(alice)
    bodies += [
        client.get(path).content for path in ("/", f"/twins/{enrolled.pk}/", f"/generations/{job.pk}/", "/generations/")
    ]
    staff = Client()
    staff.force_login(charlie)
    bodies += [
        staff.get(path).content
        for path in (
            reverse("admin:twins_twin_change", args=[enrolled.pk]),
            reverse("admin:twins_selfie_change", args=[selfie.pk]),
            reverse("admin:twins_twin_changelist"),
            reverse("admin:generation_generationjob_change", args=[job.pk]),
        )
    ]
    assert all(bodies)
    for body in bodies:
        assert not _find_leaks(body, vectors)
        assert b'"embedding"' not in body

    formatter = JsonFormatter()
    logs = "\n".join(formatter.format(record) for record in caplog.records).encode()
    assert b"enrollment finished" in logs and b"generation succeeded" in logs  # the logs were captured
    assert not _find_leaks(logs, vectors)


# --- retention ----------------------------------------------------------------------------------


def test_the_retention_schedule_is_installed(db):
    schedule = Schedule.objects.get(func="twins.tasks.purge_expired_selfies_task")
    assert schedule.schedule_type == Schedule.DAILY and schedule.repeats < 0


def test_raw_selfies_expire_after_the_retention_period_and_the_twin_keeps_working(
    alice, api_alice, settings, media_root, django_capture_on_commit_callbacks, monkeypatch
):
    from twins.tasks import purge_expired_selfies_task

    settings.SELFIE_RETENTION_DAYS = 30
    now = timezone.now()
    old, recent = full_twin(alice, "Old", seed=1), full_twin(alice, "Recent", seed=2)
    Twin.objects.filter(pk=old.pk).update(enrolled_at=now - timedelta(days=31))
    Twin.objects.filter(pk=recent.pk).update(enrolled_at=now - timedelta(days=29))
    Selfie.objects.filter(twin__in=[old, recent]).update(created_at=now - timedelta(days=40))
    late = twin_services.add_selfies(twin=old, uploads=[upload("late.jpg", image_bytes(color=(9, 9, 9)))])
    old_selfie_files = {f for f in _files_of(media_root, old) if "/selfies/" in f}
    assert len(old_selfie_files) == 4

    with django_capture_on_commit_callbacks(execute=True):
        assert purge_expired_selfies_task() == 3
    old.refresh_from_db()
    # The three photos of that enrollment are gone, rows (and their embeddings) and files;
    # the one added after it stays, as do the recent twin's.
    assert list(old.selfies.values_list("pk", flat=True)) == [late.accepted[0].selfie.pk]
    assert {f for f in _files_of(media_root, old) if "/selfies/" in f} == {late.accepted[0].selfie.image.name}
    assert recent.selfies.count() == 3
    assert_storage_matches_database(media_root)
    # The twin is still whole: identity, reference face, earlier images; and it still generates.
    assert old.status == Twin.Status.READY and old.embedding and old.reference_face
    assert "deleted 30 days after enrollment" in old.status_message
    assert api_alice.get(f"/api/twins/{old.pk}/").status_code == 200
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **kw: None)
    response = api_alice.post("/api/generations/", {"twin": old.pk, "prompt": "still me"}, format="json")
    assert response.status_code == 202

    with django_capture_on_commit_callbacks(execute=True):
        assert purge_expired_selfies_task() == 0  # nothing left to do


def test_retention_zero_keeps_every_photo(alice, settings, media_root):
    settings.SELFIE_RETENTION_DAYS = 0
    twin = full_twin(alice, seed=1)
    Twin.objects.filter(pk=twin.pk).update(enrolled_at=timezone.now() - timedelta(days=3650))
    assert twin_services.purge_expired_selfies() == 0
    assert twin.selfies.count() == 3


# --- no EXIF or GPS in anything stored ----------------------------------------------------------


def _assert_clean(data: bytes, what: str) -> None:
    with Image.open(io.BytesIO(data)) as image:
        assert not image.getexif(), what
        assert not {"exif", "xmp", "comment", "icc_profile", "XML:com.adobe.xmp"} & set(image.info), (what, image.info)
        assert not getattr(image, "text", None), (what, image.text)
    for marker in (b"Exif\x00\x00", b"GPS", b"SecretCam", b"home address", b"<x:xmpmeta"):
        assert marker not in data, (what, marker)


def test_stored_images_carry_no_exif_or_gps(enrolled, alice, monkeypatch, media_root):
    for orientation in (1, 6):
        twin_services.add_selfies(
            twin=TwinFactory(owner=alice),
            uploads=[upload(f"gps{orientation}.jpg", jpeg_with_exif(orientation=orientation, gps=True))],
        )
    for selfie in Selfie.objects.all():
        _assert_clean(selfie.image.read(), f"selfie {selfie.original_name}")
    _assert_clean(enrolled.reference_face.read(), "reference face")

    # Generated images: even if the pipeline handed back an image with metadata, none is stored.
    from generation import pipeline

    exif = Image.Exif()
    exif[0x010F] = "SecretCam"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0)}

    def tagged(*, request, on_step=None):
        images = []
        for _ in request.seeds:
            image = Image.new("RGB", (64, 64), (10, 20, 30))
            image.info.update(exif=exif.tobytes(), comment=b"home address", parameters="SecretCam")
            images.append(image)
        return images

    monkeypatch.setattr(pipeline, "generate_images", tagged)
    job = GenerationJobFactory(twin=enrolled, owner=alice, num_images=2, steps=2)
    generation_services.run_generation(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == GenerationJob.Status.SUCCEEDED, job.error
    for image in job.images.all():
        _assert_clean(image.file.read(), f"generated {image.filename}")
