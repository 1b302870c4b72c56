"""Staff and other people's generations: read anywhere, change only in the admin, and every admin
change lands in its change log (LogEntry). The dashboard answers staff 403 for every change, as
twins do (twins.selectors.get_twin(for_change=True))."""

from __future__ import annotations

import io

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.core.files.base import ContentFile
from django.test import Client
from PIL import Image

from generation.models import GeneratedImage, GenerationJob
from tests.factories import GenerationJobFactory, TwinFactory

Status = GenerationJob.Status


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (20, 100, 50)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def twin(alice):
    return TwinFactory(owner=alice, ready=True)


@pytest.fixture
def finished_job(twin):
    job = GenerationJobFactory(twin=twin, status=Status.SUCCEEDED, num_images=1)
    image = GeneratedImage(job=job, index=0, seed=job.seed, width=64, height=64)
    image.file.save(image.filename, ContentFile(_png()), save=True)
    return job


@pytest.fixture
def staff(charlie) -> Client:
    client = Client()
    client.force_login(charlie)
    return client


def test_staff_read_but_cannot_change_anyones_job_on_the_dashboard(staff, twin, finished_job, media_root):
    running = GenerationJobFactory(twin=twin, status=Status.RUNNING)
    files = sorted(media_root.rglob("*.png"))
    assert staff.get(f"/generations/{finished_job.pk}/").status_code == 200
    assert staff.get(f"/generations/{finished_job.pk}/images/1/").status_code == 200
    assert staff.post(f"/generations/{finished_job.pk}/images/1/delete/").status_code == 403
    assert staff.post(f"/generations/{finished_job.pk}/delete/").status_code == 403
    assert staff.post(f"/generations/{running.pk}/cancel/").status_code == 403
    assert finished_job.images.count() == 1 and sorted(media_root.rglob("*.png")) == files
    assert GenerationJob.objects.values_list("cancel_requested", flat=True).get(pk=running.pk) is False


def test_staff_change_their_own_jobs_on_the_dashboard(staff, charlie, django_capture_on_commit_callbacks):
    own = GenerationJobFactory(twin=TwinFactory(owner=charlie, ready=True), status=Status.SUCCEEDED)
    with django_capture_on_commit_callbacks(execute=True):
        assert staff.post(f"/generations/{own.pk}/delete/").status_code == 302
    assert not GenerationJob.objects.filter(pk=own.pk).exists()


def _log(job: GenerationJob) -> list[tuple[int, str]]:
    return list(
        LogEntry.objects.filter(object_id=str(job.pk), content_type__model="generationjob")
        .order_by("pk")
        .values_list("action_flag", "change_message")
    )


def test_admin_actions_on_jobs_are_logged(staff, charlie, twin, settings):
    settings.GENERATION_MAX_CONCURRENT_JOBS = 10
    queued = GenerationJobFactory(twin=twin)
    done = GenerationJobFactory(twin=twin, status=Status.SUCCEEDED)
    response = staff.post(
        "/admin/generation/generationjob/", {"action": "cancel_jobs", ACTION_CHECKBOX_NAME: [queued.pk]}
    )
    assert response.status_code == 302
    assert GenerationJob.objects.get(pk=queued.pk).status == Status.CANCELLED
    assert _log(queued) == [(CHANGE, "Cancelled from the admin.")]

    response = staff.post("/admin/generation/generationjob/", {"action": "rerun_jobs", ACTION_CHECKBOX_NAME: [done.pk]})
    assert response.status_code == 302
    again = GenerationJob.objects.exclude(pk__in=[queued.pk, done.pk]).get()
    assert _log(done) == [(CHANGE, f"Run again from the admin as job {again.pk}.")]
    assert _log(again) == [(ADDITION, f"Run again from the admin, from job {done.pk}.")]
    assert LogEntry.objects.filter(user=charlie).count() == 3


def test_admin_deletes_are_logged(staff, finished_job, media_root, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(f"/admin/generation/generationjob/{finished_job.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not GenerationJob.objects.filter(pk=finished_job.pk).exists()
    assert [flag for flag, _ in _log(finished_job)] == [DELETION]
    assert not any((media_root / "generations").rglob("*.png"))  # the twin keeps its reference face
