from __future__ import annotations

import pytest
from django.db import transaction
from django_q.models import OrmQ

from generation.models import GenerationJob
from generation.services import cancel_generation, submit_generation
from tests.factories import GenerationJobFactory, TwinFactory
from twinsite.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed


@pytest.fixture
def twin(alice):
    return TwinFactory(owner=alice, ready=True)


def test_submit_creates_a_queued_job_and_queues_exactly_one_task_after_commit(
    alice, twin, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        job = submit_generation(owner=alice, twin=twin, prompt="  a studio portrait  ", num_images=2, seed=7)
        assert not OrmQ.objects.exists()  # not before the commit: a worker could take it and find no row
    assert job.status == GenerationJob.Status.QUEUED
    assert job.prompt == "a studio portrait"
    queued = OrmQ.objects.get()  # the real ORM broker's queue: exactly one task
    assert queued.key == "gpu"
    assert queued.task["func"] == "generation.tasks.run_generation"
    assert queued.task["args"] == (job.pk,)
    assert queued.name() == f"generation-{job.pk}"


def test_a_rolled_back_submit_leaves_no_job_and_queues_nothing(alice, twin, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        job = submit_generation(owner=alice, twin=twin, prompt="x")
        assert GenerationJob.objects.filter(pk=job.pk).exists()
        assert not OrmQ.objects.exists()  # inside the transaction: the task waits for the commit
        raise RuntimeError("the caller's transaction fails after the submit")
    assert callbacks == []  # the rollback dropped the queued send
    assert not GenerationJob.objects.exists()
    assert not OrmQ.objects.exists()


def test_random_seed_when_none_given(alice, twin):
    job = submit_generation(owner=alice, twin=twin, prompt="x")
    assert 0 <= job.seed < 2**31


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prompt": ""}, "prompt"),
        ({"prompt": "   \x00\x07  "}, "prompt"),
        ({"prompt": "x" * 1001}, "prompt"),
        ({"num_images": 0}, "num_images"),
        ({"num_images": 5}, "num_images"),
        ({"steps": 0}, "steps"),
        ({"steps": 500}, "steps"),
        ({"guidance": -1}, "guidance"),
        ({"identity_strength": 3}, "identity_strength"),
        ({"face_structure": 2.5}, "face_structure"),
        ({"face_structure": -0.1}, "face_structure"),
        ({"best_of": 9}, "best_of"),
        ({"seed": -5}, "seed"),
        ({"negative_prompt": "n" * 1001}, "negative_prompt"),
    ],
)
def test_invalid_requests_name_the_field(alice, twin, kwargs, field):
    with pytest.raises(ValidationFailed) as error:
        submit_generation(owner=alice, twin=twin, **{"prompt": "ok", **kwargs})
    assert field in error.value.fields


def test_the_face_structure_weight_is_an_advanced_setting_recorded_on_the_job(alice, twin, client, api_alice, settings):
    """FaceID Plus v2's s_scale: 1.0 (the recipe's) unless asked; the form, the API and the job page carry it."""
    settings.GENERATION_MAX_CONCURRENT_JOBS = 10
    assert submit_generation(owner=alice, twin=twin, prompt="x").face_structure == 1.0
    response = api_alice.post(
        "/api/generations/", {"twin": twin.pk, "prompt": "a portrait", "face_structure": 0.6}, format="json"
    )
    assert response.status_code == 202, response.content
    assert response.json()["face_structure"] == 0.6
    job = GenerationJob.objects.get(pk=response.json()["id"])
    assert job.face_structure == 0.6
    bad = api_alice.post("/api/generations/", {"twin": twin.pk, "prompt": "x", "face_structure": 9}, format="json")
    assert bad.status_code == 400 and "face_structure" in bad.json()["error"]["fields"]

    client.force_login(alice)
    form = client.get(f"/twins/{twin.pk}/generate/new/").content.decode()
    advanced = form[form.index('class="advanced"') :]
    assert 'name="face_structure"' in advanced and 'value="1.0"' in advanced
    client.post(
        f"/twins/{twin.pk}/generate/",
        {
            "prompt": "p",
            "num_images": 1,
            "steps": 4,
            "guidance": 5,
            "identity_strength": 0.8,
            "face_structure": 0.3,
            "best_of": 1,
        },
    )
    assert GenerationJob.objects.latest("pk").face_structure == 0.3
    assert "0.3" in client.get(f"/generations/{GenerationJob.objects.latest('pk').pk}/").content.decode()


def test_control_characters_are_dropped_and_unicode_kept(alice, twin):
    job = submit_generation(owner=alice, twin=twin, prompt="portrait\x1b[31m of me\u200b in Zürich 🌄\nnight")
    assert job.prompt == "portrait[31m of me in Zürich 🌄 night"


def test_only_a_ready_twin_can_generate(alice):
    twin = TwinFactory(owner=alice)
    with pytest.raises(Conflict):
        submit_generation(owner=alice, twin=twin, prompt="x")


def test_someone_elses_twin_is_not_found(bob, twin):
    with pytest.raises(NotFound):
        submit_generation(owner=bob, twin=twin, prompt="x")


def test_concurrent_job_limit(alice, twin, settings):
    settings.GENERATION_MAX_CONCURRENT_JOBS = 2
    submit_generation(owner=alice, twin=twin, prompt="x")
    submit_generation(owner=alice, twin=twin, prompt="x")
    with pytest.raises(QuotaExceeded, match="limit is 2"):
        submit_generation(owner=alice, twin=twin, prompt="x")


def test_daily_image_limit_counts_the_last_24_hours(alice, twin, settings):
    settings.GENERATION_MAX_IMAGES_PER_DAY = 5
    GenerationJobFactory(twin=twin, num_images=4, status=GenerationJob.Status.SUCCEEDED)
    GenerationJobFactory(twin=twin, num_images=4, status=GenerationJob.Status.FAILED)  # failures don't count
    submit_generation(owner=alice, twin=twin, prompt="x", num_images=1)
    with pytest.raises(QuotaExceeded, match="limit is 5"):
        submit_generation(owner=alice, twin=twin, prompt="x", num_images=1)


def test_cancel_a_queued_job_is_immediate(alice, twin):
    job = submit_generation(owner=alice, twin=twin, prompt="x")
    assert cancel_generation(job=job).status == GenerationJob.Status.CANCELLED


def test_cancel_a_running_job_asks_the_worker(twin):
    job = GenerationJobFactory(twin=twin, status=GenerationJob.Status.RUNNING)
    job = cancel_generation(job=job)
    assert job.status == GenerationJob.Status.RUNNING
    assert job.cancel_requested


def test_cancel_a_finished_job_is_a_conflict(twin):
    job = GenerationJobFactory(twin=twin, status=GenerationJob.Status.SUCCEEDED)
    with pytest.raises(Conflict):
        cancel_generation(job=job)


def test_the_database_refuses_impossible_jobs(twin):
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        GenerationJobFactory(twin=twin, num_images=9)
