"""Worker killed mid-job: real `manage.py qcluster` processes (the `gpu` cluster, tiny backend, on the
test database), SIGKILLed as a whole process group while a generation or an enrollment is running.

Ten trials of each kind: queue a job, start a worker, wait until a job is in progress on it
(progress written since it started), SIGKILL the process group at a random moment, repeat.
Then a last worker finishes everything. Jobs come back two ways, both exercised: django-q2's ORM
broker hands a task whose worker died to the next worker `retry` seconds after it was taken
(Q_GPU_RETRY, small here), and the stale-job reapers (on a one-minute schedule in production,
called here while the last worker drains) queue jobs whose heartbeat stopped. The services
restart a job from scratch, counting its starts (and fail it with a message after too many).

Every job must end `succeeded`/`ready` or `failed` with a message, none stays queued, running or
enrolling; at no moment does a job show a partial or duplicated set of images or an enrollment
half its verdicts; at the end every stored file is referenced and every reference has its file.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from django.db.models import Count
from django.utils import timezone
from django_q.tasks import async_task

from generation.models import GeneratedImage, GenerationJob
from generation.services import reap_stale_generations
from tests.factories import GenerationJobFactory, TwinFactory, UserFactory, unit_vector
from tests.reliability.support import assert_storage_matches_database, report
from tests.twins.images import photo_upload
from tests.workers import Worker, wait_for
from twins import services as twin_services
from twins.models import Selfie, Twin

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TRIALS = int(os.environ.get("CRASH_TRIALS", "10"))
WORKER_ENV = {
    # Short, for a short test; the time limit still leaves room for a slow, shared CPU.
    "Q_GPU_TIMEOUT": "30",
    "Q_GPU_RETRY": "35",
    "GENERATION_STALE_AFTER_S": "3",
    "TWIN_ENROLLMENT_STALE_AFTER_S": "10",
    # Four starts, so that a job hit by two or three of the kills still gets to finish.
    "GENERATION_MAX_ATTEMPTS": "4",
    "TWIN_MAX_ENROLLMENT_ATTEMPTS": "4",
    "Q_POLL": "0.1",
}
REAP_EVERY_S = 10


class Workers:
    """Starts gpu workers one at a time, kills them, and never leaves one behind."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.current: Worker | None = None
        self.kills = 0
        self.env = dict(WORKER_ENV)

    def start(self) -> Worker:
        assert self.current is None
        self.current = Worker(cluster="gpu", extra_env=self.env, log_path=self.log_path)
        return self.current

    def kill(self) -> None:
        assert self.current is not None
        self.current.kill()
        self.current = None
        self.kills += 1

    def stop(self) -> None:
        if self.current is not None:
            self.current.kill()  # no need to wait out django-q2's graceful shutdown
            self.current = None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def workers(tmp_path: Path, face_models, settings):
    # The reapers run in this process during the drain: same thresholds as the workers.
    settings.GENERATION_STALE_AFTER_S = int(WORKER_ENV["GENERATION_STALE_AFTER_S"])
    settings.TWIN_ENROLLMENT_STALE_AFTER_S = int(WORKER_ENV["TWIN_ENROLLMENT_STALE_AFTER_S"])
    pool = Workers(tmp_path / "workers.log")
    yield pool
    pool.stop()


def _trials(workers: Workers, queue_job: Callable[[int], None], running: Callable[[datetime], bool], *, what: str,
            rng: random.Random) -> int:
    """TRIALS times: queue a job, start a worker, wait until a job is in progress on it, SIGKILL its
    process group. A kill that came just after the job finished doesn't count; the trial is repeated."""
    trials = 0
    for attempt in range(2 * TRIALS):
        if trials == TRIALS:
            break
        queue_job(attempt)
        started = timezone.now()
        worker = workers.start()
        try:
            wait_for(lambda started=started: running(started), timeout=120, interval=0.05, what=what)
        except AssertionError:
            pytest.fail(f"{what} {trials + 1}: never saw a job in progress; worker log:\n{workers.output()}")
        time.sleep(rng.uniform(0, 0.3))  # anywhere in the job: denoising, scoring, saving
        assert worker.process.poll() is None, workers.output()
        workers.kill()
        trials += running(started)  # still unfinished after the kill: it really died mid-job
    assert trials == TRIALS, f"only {trials} of {workers.kills} kills landed mid-job"
    return trials


def _drain(workers: Workers, done: Callable[[], bool], *, what: str, describe: Callable[[], object]) -> None:
    """A last worker finishes everything; the reapers run every few seconds, as their schedules would."""
    workers.start()
    last_reap = time.monotonic()

    def finished() -> bool:
        nonlocal last_reap
        if time.monotonic() - last_reap > REAP_EVERY_S:
            reap_stale_generations()
            twin_services.reap_stale_enrollments()
            last_reap = time.monotonic()
        return done()

    try:
        wait_for(finished, timeout=300, interval=0.2, what=what)
    except AssertionError:
        pytest.fail(f"{what}: still active: {describe()}\nworker log:\n{workers.output()}")


# --- generation ---------------------------------------------------------------------------------


def _assert_no_partial_images() -> None:
    """At every moment: images only on succeeded jobs, and then exactly the full set, once each."""
    unfinished = GeneratedImage.objects.exclude(job__status=GenerationJob.Status.SUCCEEDED)
    assert not unfinished.exists(), list(unfinished.values_list("job_id", "index"))
    counts = (GenerationJob.objects.filter(status=GenerationJob.Status.SUCCEEDED)
              .annotate(n=Count("images")).values_list("pk", "n", "num_images"))
    wrong = [(pk, n, expected) for pk, n, expected in counts if n != expected]
    assert not wrong, wrong


def test_generations_survive_a_killed_worker(workers, media_root):
    rng = random.Random(7)
    # Each worker loads the pipeline as it starts (warm-up, outside the task's time limit), as in
    # production; a 512-d twin is what the warm pipeline is built for.
    workers.env["TWIN_WARM_UP"] = "true"
    owner = UserFactory(username="crash")
    twin = TwinFactory(owner=owner, ready=True, embedding=unit_vector(512).tobytes(), embedding_dim=512)

    def a_generation_in_progress(since: datetime) -> bool:
        _assert_no_partial_images()
        return GenerationJob.objects.filter(status=GenerationJob.Status.RUNNING, progress_step__gt=0,
                                            heartbeat_at__gt=since).exists()

    def queue_job(n: int) -> None:
        job = GenerationJobFactory(twin=twin, owner=owner, num_images=2, steps=16, seed=100 * n)
        async_task("generation.tasks.run_generation", job.pk,  # as submit_generation queues it
                   q_options={"cluster": "gpu", "task_name": f"generation-{job.pk}"})

    trials = _trials(workers, queue_job, a_generation_in_progress, what="generation trial", rng=rng)

    def all_finished() -> bool:
        _assert_no_partial_images()
        return not GenerationJob.objects.filter(status__in=GenerationJob.ACTIVE_STATUSES).exists()

    _drain(workers, all_finished, what="every generation to finish",
           describe=lambda: list(GenerationJob.objects.values_list("pk", "status", "attempts", "progress_step")))

    finished = list(GenerationJob.objects.order_by("pk"))
    succeeded = [j for j in finished if j.status == GenerationJob.Status.SUCCEEDED]
    failed = [j for j in finished if j.status == GenerationJob.Status.FAILED]
    report(f"[worker crash] generation: {trials} trials survived of {trials} (workers killed mid-job; "
          f"{workers.kills} kills in all); {len(succeeded) + len(failed)} of {len(finished)} jobs finished "
          f"({len(succeeded)} succeeded, {len(failed)} failed with a message); starts per job "
          f"{[j.attempts for j in finished]}")
    assert len(succeeded) + len(failed) == len(finished)
    assert all(j.error for j in failed), [j.error for j in failed]
    assert sum(j.attempts for j in finished) >= trials + len(succeeded)  # each mid-job kill cost a restart
    for job in succeeded:
        assert sorted(job.images.values_list("index", flat=True)) == [0, 1]
        assert [image.seed for image in job.images.order_by("index")] == [job.seed, job.seed + 1]
    _assert_no_partial_images()
    assert_storage_matches_database(media_root)


# --- enrollment ---------------------------------------------------------------------------------


def test_enrollments_survive_a_killed_worker(workers, faces_dir, media_root, settings):
    rng = random.Random(11)
    workers.env["TWIN_WARM_UP"] = "false"  # enrollment needs only the face models
    settings.SELFIE_MIN_SIDE = 200  # the LFW photos are 250 px
    owner = UserFactory(username="crash-enroll")
    # 20 photos of one man and 4 of another: a real enrollment with verdicts of both kinds.
    photos = sorted((faces_dir / "george_w_bush").glob("*.jpg"))
    photos += sorted((faces_dir / "colin_powell").glob("*.jpg"))[:4]

    def an_enrollment_in_progress(since: datetime) -> bool:
        # A killed run writes none of its verdicts: they are saved in one transaction at the end.
        assert not Selfie.objects.filter(twin__status=Twin.Status.ENROLLING).exclude(
            status=Selfie.Status.PENDING).exists()
        return Twin.objects.filter(status=Twin.Status.ENROLLING, progress_done__gt=0, updated_at__gt=since).exists()

    def queue_enrollment(n: int) -> None:
        twin = TwinFactory(owner=owner, name=f"Crash {n}")
        twin_services.add_selfies(twin=twin, uploads=[photo_upload(p) for p in photos])
        twin_services.start_enrollment(twin=twin)  # queued on the gpu cluster as the API does

    trials = _trials(workers, queue_enrollment, an_enrollment_in_progress, what="enrollment trial", rng=rng)

    _drain(workers, lambda: not Twin.objects.filter(status=Twin.Status.ENROLLING).exists(),
           what="every enrollment to finish",
           describe=lambda: list(Twin.objects.values_list("pk", "status", "enrollment_attempts", "progress_done")))

    finished = list(Twin.objects.filter(owner=owner).order_by("pk"))
    ready = [t for t in finished if t.status == Twin.Status.READY]
    failed = [t for t in finished if t.status == Twin.Status.FAILED]
    report(f"[worker crash] enrollment: {trials} trials survived of {trials} (workers killed mid-job; "
          f"{workers.kills} kills in all); {len(ready) + len(failed)} of {len(finished)} enrollments finished "
          f"({len(ready)} ready, {len(failed)} failed with a message); starts per twin "
          f"{[t.enrollment_attempts for t in finished]}")
    assert len(ready) + len(failed) == len(finished)
    assert sum(t.enrollment_attempts for t in finished) >= trials + len(finished)  # each mid-job kill: a restart
    assert all(t.status_message for t in finished)
    for twin in ready:
        assert twin.embedding and twin.reference_face and twin.accepted_count >= 15
        assert not twin.selfies.filter(status=Selfie.Status.PENDING).exists()  # every photo got its verdict
    assert_storage_matches_database(media_root)  # one reference face per ready twin, nothing half-written
