"""A dead worker's job comes back in seconds (twinsite/jobs.py, generation/worker_status.py).

The holder (`host:pid`) is written on claim; a live worker's heartbeat thread releases and
queues again a job whose holder went silent, a starting worker does so at once for a dead
predecessor of its host; the thread's beat, not the denoising steps, keeps a long run alive;
and a run that was restarted elsewhere makes nothing visible.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import OrmQ
from PIL import Image

from generation import pipeline, worker_status
from generation.models import GeneratedImage, GenerationJob, WorkerHeartbeat
from generation.services import GENERATION, run_generation
from tests.factories import GenerationJobFactory, TwinFactory
from tests.workers import Worker, stop_workers, wait_for
from twins.models import Twin
from twins.services import ENROLLMENT
from twinsite import jobs

pytestmark = pytest.mark.django_db(transaction=True)  # queued on commit; the beating thread has its own connection

Status = GenerationJob.Status


@pytest.fixture(params=["generation", "enrollment"])
def job(request, alice):
    if request.param == "generation":
        return GENERATION, GenerationJobFactory(twin=TwinFactory(owner=alice, ready=True))
    return ENROLLMENT, TwinFactory(owner=alice, status=Twin.Status.ENROLLING)


def _start(kind: jobs.JobKind) -> dict:
    return {"status": Status.RUNNING} if kind is GENERATION else {}


def _row(kind: jobs.JobKind, row) -> dict:
    return kind.model.objects.values(kind.attempts_field, kind.holder_field).get(pk=row.pk)


def _held_by(kind: jobs.JobKind, row, holder: str, *, silent_s: float = 0) -> None:
    """As if `holder` had claimed the row and beaten it `silent_s` ago."""
    kind.model.objects.filter(pk=row.pk).update(
        **{kind.holder_field: holder, kind.heartbeat_field: timezone.now() - timedelta(seconds=silent_s)}
    )


def _restart_tasks(kind: jobs.JobKind, row) -> list[str]:
    return [t.name() for t in OrmQ.objects.all() if t.func() == kind.task_path and t.task["args"] == (row.pk,)]


def _a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_claim_records_this_process_as_the_holder(job):
    kind, row = job
    assert jobs.claim(kind, row.pk, start=_start(kind)) == 1
    assert _row(kind, row)[kind.holder_field] == f"{socket.gethostname()}:{os.getpid()}"
    assert (kind, row.pk) in jobs.held()
    jobs.let_go(kind, row.pk)
    assert (kind, row.pk) not in jobs.held()


def test_a_silent_holders_job_is_queued_again_once_and_taken_at_once(job):
    kind, row = job
    jobs.claim(kind, row.pk, start=_start(kind))
    jobs.let_go(kind, row.pk)
    _held_by(kind, row, "gone-host:4242", silent_s=kind.stale_after_s() - 2)
    assert jobs.requeue_dead(kind) == 0  # still within its threshold: alive
    _held_by(kind, row, "gone-host:4242", silent_s=kind.stale_after_s() + 1)
    assert jobs.requeue_dead(kind) == 1
    assert jobs.requeue_dead(kind) == 0  # released: queued once, not at every beat of every worker
    assert _restart_tasks(kind, row) == [f"{kind.task_label}-{row.pk}-restart"]
    assert _row(kind, row)[kind.holder_field] == ""
    assert jobs.claim(kind, row.pk) == 2  # the queued copy restarts it, counted
    jobs.let_go(kind, row.pk)


def test_a_starting_worker_queues_its_dead_predecessors_job_at_once(job):
    kind, row = job
    jobs.claim(kind, row.pk, start=_start(kind))
    jobs.let_go(kind, row.pk)
    host = socket.gethostname()
    # Beaten a moment ago by a process of this host that is alive (the parent of this test): not dead.
    _held_by(kind, row, f"{host}:{os.getppid()}")
    assert jobs.requeue_predecessors(kind) == 0
    _held_by(kind, row, f"another-host:{_a_dead_pid()}")  # another host's pids are not ours to judge
    assert jobs.requeue_predecessors(kind) == 0
    _held_by(kind, row, f"{host}:{_a_dead_pid()}")  # killed a second ago: no need to wait out the silence
    assert jobs.requeue_predecessors(kind) == 1
    assert _restart_tasks(kind, row) == [f"{kind.task_label}-{row.pk}-restart"]
    assert jobs.claim(kind, row.pk) == 2
    jobs.let_go(kind, row.pk)


def _plain_images(request: pipeline.ImageRequest) -> list[Image.Image]:
    return [Image.new("RGB", (request.width, request.height), (seed % 255, 90, 120)) for seed in request.seeds]


def _beating_thread(stop: threading.Event, interval: float) -> threading.Thread:
    """What a gpu worker's heartbeat thread does every JOB_HEARTBEAT_S (generation/worker_status.py)."""

    def loop() -> None:
        from django.db import connection

        try:
            while not stop.wait(interval):
                worker_status.watch_jobs(cluster="gpu")
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_a_long_step_is_not_a_dead_worker(alice, face_models, settings, monkeypatch):
    """One denoising step longer than the stale threshold: the thread's beats keep the job alive,
    so neither this worker's thread nor any other live worker queues it again."""
    settings.GENERATION_STALE_AFTER_S = 2
    settings.JOB_HEARTBEAT_S = 0.3
    job = GenerationJobFactory(twin=TwinFactory(owner=alice, ready=True), num_images=2, steps=2)

    def slow_gpu(*, request, on_step=None):
        for done in (1, 2):
            time.sleep(settings.GENERATION_STALE_AFTER_S + 1.5)  # a compile, or one huge step
            if on_step is not None:
                on_step(done, 2)
        return _plain_images(request)

    monkeypatch.setattr(pipeline, "generate_images", slow_gpu)
    stop = threading.Event()
    thread = _beating_thread(stop, settings.JOB_HEARTBEAT_S)
    try:
        run_generation(job_id=job.pk)
    finally:
        stop.set()
        thread.join(timeout=10)
    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED, job.error
    assert job.attempts == 1
    assert _restart_tasks(GENERATION, job) == []
    assert sorted(job.images.values_list("index", flat=True)) == [0, 1]


def test_a_run_restarted_elsewhere_makes_nothing_visible(alice, face_models, media_root, monkeypatch):
    """A worker thought dead (its beats did not reach the database) finishes after another worker
    restarted its job: it adds no second set of images and leaves the job to the new holder."""
    job = GenerationJobFactory(twin=TwinFactory(owner=alice, ready=True), num_images=2, steps=2)

    def gpu_then_taken_over(*, request, on_step=None):
        GenerationJob.objects.filter(pk=job.pk).update(worker="other-host:77", attempts=2, heartbeat_at=timezone.now())
        return _plain_images(request)

    monkeypatch.setattr(pipeline, "generate_images", gpu_then_taken_over)
    run_generation(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Status.RUNNING and job.worker == "other-host:77"
    assert not GeneratedImage.objects.filter(job=job).exists()
    assert not [p for p in media_root.rglob("*.png") if f"/{job.pk}/" in str(p)]  # its own files removed


@pytest.mark.slow
def test_a_live_worker_restarts_a_dead_workers_job_within_its_threshold(alice, face_models, tmp_path, settings):
    """A real gpu worker; a job left running by a worker of another host that just died. The live
    worker's heartbeat thread queues it again once silent for GENERATION_STALE_AFTER_S, and runs it."""
    stale_s, beat_s = 6, 1
    env = {
        "TWIN_WARM_UP": "false",
        "GENERATION_STALE_AFTER_S": str(stale_s),
        "JOB_HEARTBEAT_S": str(beat_s),
        "WORKER_HEARTBEAT_S": "1",
        "Q_GPU_TIMEOUT": "300",
        "Q_GPU_RETRY": "900",
        "Q_POLL": "0.1",
    }
    worker = Worker(cluster="gpu", extra_env=env, log_path=tmp_path / "gpu.log")
    try:
        wait_for(lambda: WorkerHeartbeat.objects.filter(cluster="gpu").exists(), timeout=180, what="a live worker")
        live = WorkerHeartbeat.objects.get(cluster="gpu")
        job = GenerationJobFactory(
            twin=TwinFactory(owner=alice, ready=True),
            num_images=1,
            steps=2,
            status=Status.RUNNING,
            attempts=1,
            progress_step=1,
            progress_total=2,
            started_at=timezone.now(),
            heartbeat_at=timezone.now(),
            worker="gone-host:4242",
        )
        died = time.monotonic()

        def running_on_the_live_worker() -> bool:
            job.refresh_from_db()
            return job.attempts == 2 and job.worker == f"{live.host}:{live.pid}"

        wait_for(running_on_the_live_worker, timeout=60, interval=0.1, what="the job to restart")
        recovered = time.monotonic() - died
        assert stale_s <= recovered <= stale_s + 2 * beat_s + 4, recovered  # not before the silence, soon after
        wait_for(
            lambda: GenerationJob.objects.get(pk=job.pk).status == Status.SUCCEEDED,
            timeout=120,
            what="the restarted job to succeed",
        )
        assert GeneratedImage.objects.filter(job=job).count() == 1
    finally:
        stop_workers([worker])


def test_a_job_waiting_to_restart_says_so_instead_of_a_frozen_counter(client, alice):
    """Generation: the API's `restarting`/`notice` and the job page; enrollment: the twin's status line."""
    job = GenerationJobFactory(
        twin=TwinFactory(owner=alice, ready=True),
        status=Status.RUNNING,
        attempts=1,
        progress_step=3,
        progress_total=8,
        worker="gone-host:4242",
        heartbeat_at=timezone.now(),
    )
    twin = TwinFactory(
        owner=alice,
        status=Twin.Status.ENROLLING,
        enrollment_attempts=1,
        enrollment_worker="gone-host:4242",
        status_message="Checked 7 of 20 photos…",
    )
    client.force_login(alice)

    def generation() -> tuple[dict, str]:
        page = client.get(f"/generations/{job.pk}/").content.decode()
        return client.get(f"/api/generations/{job.pk}/").json(), page

    def enrollment() -> dict:
        return client.get(f"/api/twins/{twin.pk}/").json()

    data, page = generation()
    assert data["restarting"] is False and data["notice"] == ""  # beaten a moment ago: alive
    assert "Step 3 of 8" in page
    assert enrollment()["status_message"] == "Checked 7 of 20 photos…"

    _held_by(GENERATION, job, "gone-host:4242", silent_s=GENERATION.stale_after_s() + 1)
    _held_by(ENROLLMENT, twin, "gone-host:4242", silent_s=ENROLLMENT.stale_after_s() + 1)
    data, page = generation()
    assert data["restarting"] is True
    assert data["notice"] == "The worker stopped; your photos will restart on another worker."
    assert data["notice"] in page and "Step 3 of 8" not in page
    assert enrollment()["restarting"] is True
    assert enrollment()["status_message"].startswith("The worker stopped; your photos will be checked again")
    assert "The worker stopped" in client.get(f"/twins/{twin.pk}/").content.decode()

    jobs.requeue_dead(GENERATION)  # noticed and released: still waiting, still said
    assert generation()[0]["restarting"] is True
