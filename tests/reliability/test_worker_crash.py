"""Worker killed mid-job: real `manage.py qcluster` processes (the `gpu` cluster, tiny backend, on the
test database), SIGKILLed as a whole process group while a generation or an enrollment is running.

Ten trials of each kind: queue a job, wait until it is in progress on the worker (progress written
since it started), SIGKILL the process group at a random moment and start a replacement at once,
as a process supervisor would. The replacement queues again the job its dead predecessor held as
it starts (twinsite/jobs.py: the holder `host:pid` is on the row, and that pid is gone); the
silence rule (a live worker's heartbeat thread, *_STALE_AFTER_S at their defaults) is the fallback.
django-q2's own re-delivery (`retry`) is set far beyond the test, so it cannot be what brought the
job back. Each trial times the recovery: from the kill to the job running again on the live worker
(its attempt counted, the new process its holder), and waits for the job to succeed there.

Every job must end `succeeded`/`ready`; at no moment does a job show a partial or duplicated set of
images or an enrollment half its verdicts; at the end every stored file is referenced and every
reference has its file. The recovery times are printed (median, worst), not asserted.
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from django.db.models import Count
from django.utils import timezone
from django_q.tasks import async_task

from generation.models import GeneratedImage, GenerationJob, WorkerHeartbeat
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
    # django-q2's re-delivery of a killed task comes far too late to count: what brings a job back in
    # these trials is the job machinery, with its stale thresholds at their defaults.
    "Q_GPU_TIMEOUT": "300",
    "Q_GPU_RETRY": "900",
    "GENERATION_MAX_ATTEMPTS": "3",
    "TWIN_MAX_ENROLLMENT_ATTEMPTS": "3",
    "Q_POLL": "0.1",
}
REAP_EVERY_S = 10


class Workers:
    """Starts gpu workers, kills the one holding a job, and never leaves one behind."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.running: list[Worker] = []
        self.kills = 0
        self.env = dict(WORKER_ENV)

    def start(self) -> Worker:
        worker = Worker(cluster="gpu", extra_env=self.env, log_path=self.log_path)
        self.running.append(worker)
        return worker

    def holding(self, holder: str) -> Worker:
        """The worker whose process group has the holder's pid (`host:pid` of a django-q2 child)."""
        pid = int(holder.rpartition(":")[2])
        try:
            group = os.getpgid(pid)
        except ProcessLookupError:
            pytest.fail(f"the holder {holder} is not running; worker log:\n{self.output()}")
        return next(w for w in self.running if w.process.pid == group)

    def kill(self, worker: Worker) -> None:
        assert worker.process.poll() is None, self.output()
        worker.kill()
        self.running.remove(worker)
        self.kills += 1

    def stop(self) -> None:
        for worker in self.running:
            worker.kill()  # no need to wait out django-q2's graceful shutdown
        self.running = []

    def all_warm(self) -> bool:
        """Every running worker has written its heartbeat row, which it does once warm."""
        groups = set()
        for pid in WorkerHeartbeat.objects.filter(cluster="gpu").values_list("pid", flat=True):
            with contextlib.suppress(ProcessLookupError):
                groups.add(os.getpgid(pid))
        return all(w.process.pid in groups for w in self.running)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]


@pytest.fixture
def workers(tmp_path: Path, face_models):
    pool = Workers(tmp_path / "workers.log")
    yield pool
    pool.stop()


@dataclass(frozen=True)
class Progress:
    """How a kind of job looks from outside, for the trials."""

    in_progress: Callable[[datetime], int | None]  # the pk of a job in progress since then, if any
    holder: Callable[[int], tuple[int, str]]  # (attempts, holder) of a job
    finished: Callable[[int], bool]
    succeeded: Callable[[int], bool]


def _trials(
    workers: Workers,
    queue_job: Callable[[int], None],
    job: Progress,
    *,
    what: str,
    rng: random.Random,
    standby: int = 0,
) -> list[float]:
    """TRIALS times: queue a job, wait until it is in progress on the worker, SIGKILL the worker's
    process group and start a replacement; time until the job runs again on the replacement (its
    attempt counted, a live holder), then wait for it to succeed. A kill that came just after the job
    finished doesn't count; the trial is repeated. `standby` more workers run all along (live workers
    of a cluster of several GPUs). Returns the recovery seconds of each trial."""
    recoveries: list[float] = []
    for _ in range(1 + standby):
        workers.start()
    for attempt in range(2 * TRIALS):
        if len(recoveries) == TRIALS:
            break
        # The standby must be a live worker when the kill comes, not one still warming up.
        wait_for(workers.all_warm, timeout=300, interval=0.2, what="every worker warm")
        queue_job(attempt)
        started = timezone.now()
        pk = None

        def in_progress(started=started) -> bool:
            nonlocal pk
            pk = job.in_progress(started)
            return pk is not None

        try:
            wait_for(in_progress, timeout=120, interval=0.05, what=what)
        except AssertionError:
            pytest.fail(f"{what} {len(recoveries) + 1}: never saw a job in progress; worker log:\n{workers.output()}")
        time.sleep(rng.uniform(0, 0.3))  # anywhere in the job: denoising, scoring, saving
        attempts, dead = job.holder(pk)
        workers.kill(workers.holding(dead))
        killed = time.monotonic()
        workers.start()  # the supervisor's replacement
        if job.finished(pk):
            continue  # finished just before the kill: not a mid-job kill

        def running_again(pk=pk, attempts=attempts, dead=dead) -> bool:
            now_attempts, holder = job.holder(pk)
            return now_attempts > attempts and holder not in ("", dead)

        try:
            wait_for(running_again, timeout=120, interval=0.05, what=f"{what} to run again")
        except AssertionError:
            pytest.fail(f"{what} {len(recoveries) + 1}: not restarted; worker log:\n{workers.output()}")
        recoveries.append(time.monotonic() - killed)
        wait_for(lambda pk=pk: job.finished(pk), timeout=180, interval=0.1, what=f"{what} to finish")
        assert job.succeeded(pk), f"{what} {len(recoveries)}: restarted but did not succeed:\n{workers.output()}"
    assert len(recoveries) == TRIALS, f"only {len(recoveries)} of {workers.kills} kills landed mid-job"
    return recoveries


def _recovery_figures(recoveries: list[float]) -> str:
    return (
        f"recovery (kill -> running again on a live worker) median {statistics.median(recoveries):.1f} s, "
        f"worst {max(recoveries):.1f} s over {len(recoveries)} trials "
        f"[{', '.join(f'{r:.1f}' for r in recoveries)}]"
    )


def _drain(workers: Workers, done: Callable[[], bool], *, what: str, describe: Callable[[], object]) -> None:
    """The last worker finishes anything left; the reapers run every few seconds, as their schedules would."""
    if not workers.running:
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
    counts = (
        GenerationJob.objects.filter(status=GenerationJob.Status.SUCCEEDED)
        .annotate(n=Count("images"))
        .values_list("pk", "n", "num_images")
    )
    wrong = [(pk, n, expected) for pk, n, expected in counts if n != expected]
    assert not wrong, wrong


def test_generations_survive_a_killed_worker(workers, media_root):
    rng = random.Random(7)
    # Each worker loads the pipeline as it starts (warm-up, outside the task's time limit), as in
    # production; a 512-d twin is what the warm pipeline is built for.
    workers.env["TWIN_WARM_UP"] = "true"
    owner = UserFactory(username="crash")
    twin = TwinFactory(owner=owner, ready=True, embedding=unit_vector(512).tobytes(), embedding_dim=512)

    def a_generation_in_progress(since: datetime) -> int | None:
        _assert_no_partial_images()
        return (
            GenerationJob.objects.filter(
                status=GenerationJob.Status.RUNNING, progress_step__gt=0, heartbeat_at__gt=since
            )
            .exclude(worker="")
            .values_list("pk", flat=True)
            .first()
        )

    def succeeded(pk: int) -> bool:
        _assert_no_partial_images()
        return GenerationJob.objects.get(pk=pk).status == GenerationJob.Status.SUCCEEDED

    generation = Progress(
        in_progress=a_generation_in_progress,
        holder=lambda pk: GenerationJob.objects.values_list("attempts", "worker").get(pk=pk),
        finished=lambda pk: GenerationJob.objects.get(pk=pk).status not in GenerationJob.ACTIVE_STATUSES,
        succeeded=succeeded,
    )

    def queue_job(n: int) -> None:
        job = GenerationJobFactory(twin=twin, owner=owner, num_images=2, steps=16, seed=100 * n)
        async_task(
            "generation.tasks.run_generation",
            job.pk,  # as submit_generation queues it
            q_options={"cluster": "gpu", "task_name": f"generation-{job.pk}"},
        )

    # Two GPU workers, as on a host of two cards: the survivor restarts the job (the replacement, as it
    # starts, queues it again; the survivor's heartbeat thread would after the silence) while the
    # replacement warms up.
    recoveries = _trials(workers, queue_job, generation, what="generation trial", rng=rng, standby=1)
    trials = len(recoveries)

    def all_finished() -> bool:
        _assert_no_partial_images()
        return not GenerationJob.objects.filter(status__in=GenerationJob.ACTIVE_STATUSES).exists()

    _drain(
        workers,
        all_finished,
        what="every generation to finish",
        describe=lambda: list(GenerationJob.objects.values_list("pk", "status", "attempts", "progress_step")),
    )

    finished = list(GenerationJob.objects.order_by("pk"))
    succeeded = [j for j in finished if j.status == GenerationJob.Status.SUCCEEDED]
    failed = [j for j in finished if j.status == GenerationJob.Status.FAILED]
    report(
        f"[worker crash] generation: {trials} trials survived of {trials} (workers killed mid-job; "
        f"{workers.kills} kills in all); {len(succeeded)} of {len(finished)} jobs succeeded, {len(failed)} failed; "
        f"starts per job {[j.attempts for j in finished]}; {_recovery_figures(recoveries)}"
    )
    assert len(succeeded) == len(finished), [(j.pk, j.status, j.error) for j in failed]  # not one job lost
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

    def an_enrollment_in_progress(since: datetime) -> int | None:
        # A killed run writes none of its verdicts: they are saved in one transaction at the end.
        assert (
            not Selfie.objects.filter(twin__status=Twin.Status.ENROLLING).exclude(status=Selfie.Status.PENDING).exists()
        )
        return (
            Twin.objects.filter(status=Twin.Status.ENROLLING, progress_done__gt=0, updated_at__gt=since)
            .exclude(enrollment_worker="")
            .values_list("pk", flat=True)
            .first()
        )

    enrollment = Progress(
        in_progress=an_enrollment_in_progress,
        holder=lambda pk: Twin.objects.values_list("enrollment_attempts", "enrollment_worker").get(pk=pk),
        finished=lambda pk: Twin.objects.get(pk=pk).status != Twin.Status.ENROLLING,
        succeeded=lambda pk: Twin.objects.get(pk=pk).status == Twin.Status.READY,
    )

    def queue_enrollment(n: int) -> None:
        twin = TwinFactory(owner=owner, name=f"Crash {n}")
        twin_services.add_selfies(twin=twin, uploads=[photo_upload(p) for p in photos])
        twin_services.start_enrollment(twin=twin)  # queued on the gpu cluster as the API does

    recoveries = _trials(workers, queue_enrollment, enrollment, what="enrollment trial", rng=rng)
    trials = len(recoveries)

    _drain(
        workers,
        lambda: not Twin.objects.filter(status=Twin.Status.ENROLLING).exists(),
        what="every enrollment to finish",
        describe=lambda: list(Twin.objects.values_list("pk", "status", "enrollment_attempts", "progress_done")),
    )

    finished = list(Twin.objects.filter(owner=owner).order_by("pk"))
    ready = [t for t in finished if t.status == Twin.Status.READY]
    failed = [t for t in finished if t.status == Twin.Status.FAILED]
    report(
        f"[worker crash] enrollment: {trials} trials survived of {trials} (workers killed mid-job; "
        f"{workers.kills} kills in all); {len(ready)} of {len(finished)} enrollments ready, {len(failed)} failed; "
        f"starts per twin {[t.enrollment_attempts for t in finished]}; {_recovery_figures(recoveries)}"
    )
    assert len(ready) == len(finished), [(t.pk, t.status, t.status_message) for t in failed]  # not one lost
    assert sum(t.enrollment_attempts for t in finished) >= trials + len(finished)  # each mid-job kill: a restart
    assert all(t.status_message for t in finished)
    for twin in ready:
        assert twin.embedding and twin.reference_face and twin.accepted_count >= 15
        assert not twin.selfies.filter(status=Selfie.Status.PENDING).exists()  # every photo got its verdict
    assert_storage_matches_database(media_root)  # one reference face per ready twin, nothing half-written
