"""Scale-out: two `qcluster` gpu processes on one Postgres share the queue; every job runs exactly once.

The same 20 jobs are run with one worker and then with two; both wall times are printed.
Each worker is limited to one CPU thread (OMP_NUM_THREADS=1), standing in for "one GPU per
worker" on this 2-core machine, so the comparison is of workers, not of thread pools.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.db import connection

from generation.models import GeneratedImage, GenerationJob
from tests.deploy.workers import (
    processed_task_names,
    stop_workers,
    token_client,
    twin_for_the_warm_pipeline,
    wait_until_warm,
)
from tests.factories import UserFactory
from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

JOBS = 20
IMAGES_PER_JOB = 2
STEPS = 12
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _run_batch(client, twin, *, label: str, workers: list[Worker]) -> tuple[float, list[int]]:
    """Submit JOBS generations through the API at once; seconds until the last one finished."""
    started = time.monotonic()
    job_ids = []
    for number in range(JOBS):
        response = client.post(
            "/api/generations/",
            {
                "twin": twin.pk,
                "prompt": f"{label} portrait {number}",
                "num_images": IMAGES_PER_JOB,
                "steps": STEPS,
                "seed": 1000 * number,
            },
            format="json",
        )
        assert response.status_code == 202, response.content
        job_ids.append(response.json()["id"])

    def all_finished() -> bool:
        return not GenerationJob.objects.filter(pk__in=job_ids, status__in=GenerationJob.ACTIVE_STATUSES).exists()

    try:
        wait_for(all_finished, timeout=150, interval=0.1, what=f"{JOBS} jobs on {label}")
    except AssertionError as exc:
        logs = "\n\n".join(f"--- {w.log_path.name}\n{w.output()}" for w in workers)
        pytest.fail(f"{exc}\n{logs}")
    return time.monotonic() - started, job_ids


def test_two_workers_share_the_queue_and_run_every_job_exactly_once(
    settings, face_models, media_root, tmp_path, capsys
):
    if connection.vendor != "postgresql":
        pytest.skip("several workers need a shared server database: run with DATABASE_URL=postgres://…")
    settings.GENERATION_MAX_CONCURRENT_JOBS = 2 * JOBS  # the limits are per user; here one user queues everything
    settings.GENERATION_MAX_IMAGES_PER_DAY = 10 * JOBS * IMAGES_PER_JOB
    owner = UserFactory(username="scale")
    twin = twin_for_the_warm_pipeline(owner)
    client = token_client(owner)

    workers = [Worker(cluster="gpu", extra_env=ONE_THREAD, log_path=tmp_path / "worker-1.log")]
    try:
        wait_until_warm(workers[0])
        one_seconds, one_ids = _run_batch(client, twin, label="one worker", workers=workers)
        workers.append(Worker(cluster="gpu", extra_env=ONE_THREAD, log_path=tmp_path / "worker-2.log"))
        wait_until_warm(workers[1])
        two_seconds, two_ids = _run_batch(client, twin, label="two workers", workers=workers)
    finally:
        stop_workers(workers)

    jobs = list(GenerationJob.objects.filter(pk__in=one_ids + two_ids))
    assert len(jobs) == 2 * JOBS
    for job in jobs:
        assert job.status == GenerationJob.Status.SUCCEEDED, (job.pk, job.error)
        assert job.attempts == 1, (job.pk, job.attempts)
    images = list(GeneratedImage.objects.filter(job__in=jobs))
    assert Counter(image.job_id for image in images) == {job.pk: IMAGES_PER_JOB for job in jobs}
    assert sorted({(image.job_id, image.index) for image in images}) == sorted(
        (job.pk, index) for job in jobs for index in range(IMAGES_PER_JOB)
    )
    # On disk: exactly the files the rows name, none from a second run of a job.
    written = sorted(str(path.relative_to(media_root)) for path in (media_root / "generations").rglob("*.png"))
    assert written == sorted(image.file.name for image in images)

    # At the queue: each job's task was delivered and processed once, by one of the workers.
    first, second = (Counter(processed_task_names(worker)) for worker in workers)
    processed = first + second
    expected = {f"generation-{job_id}": 1 for job_id in one_ids + two_ids}
    assert processed == expected, {name: n for name, n in processed.items() if expected.get(name) != n}
    assert not set(second) & {f"generation-{i}" for i in one_ids}  # it wasn't running yet
    shared = set(second) & {f"generation-{i}" for i in two_ids}
    assert shared and len(shared) < JOBS, "the second worker should take part of the second batch, not all of it"

    with capsys.disabled():
        print(
            f"\n[scale-out] {JOBS} jobs of {IMAGES_PER_JOB} images, {STEPS} steps (tiny backend, "
            f"{settings.TWIN_TINY_IMAGE_SIZE}px, 1 CPU thread a worker, {connection.vendor}): "
            f"one worker {one_seconds:.1f} s, two workers {two_seconds:.1f} s "
            f"(speed-up x{one_seconds / two_seconds:.2f}; the second worker ran {len(shared)} of {JOBS})"
        )
