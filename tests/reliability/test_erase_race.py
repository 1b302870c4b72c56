"""Privacy: erasing a twin while one of its generations runs. The run stops, and from the moment the
erasure returns no file of the twin exists in storage, not even for an instant, and no folder of it
is left: storage is polled the whole time the worker finishes, and every write is timed.

The worker is the real run_generation in a thread of its own, on the real database and storage;
only the GPU call (generation.pipeline.generate_images) is replaced, by one that is slow and lets
the erasure in at three points: during the denoising steps, after the last step (a pipeline that
does not look for a cancel before returning), and while the first image is being written.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from django.core.files.storage import FileSystemStorage
from django.db import connection
from PIL import Image

from generation import pipeline
from generation.models import GenerationJob
from generation.services import run_generation
from tests.factories import GenerationJobFactory
from tests.reliability.test_privacy import full_twin
from twins.models import Twin
from twins.services import delete_twin

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

STEP_S = 0.05


class Race:
    """The erasure, the worker and what storage held: the shared state of one run."""

    def __init__(self, twin: Twin, media_root: Path):
        self.twin_id = twin.pk
        self.key = str(twin.storage_key)
        self.media_root = media_root
        self.erased = threading.Event()
        self.erased_at: float | None = None
        self.steps_after_erase = 0
        self.writes: list[tuple[float, str]] = []  # (when the write finished, name) of the twin's files
        self.errors: list[BaseException] = []

    def erase(self) -> None:
        try:
            delete_twin(twin=Twin.objects.get(pk=self.twin_id))
            self.erased_at = time.monotonic()
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.errors.append(exc)
        finally:
            self.erased.set()

    def erase_in_background(self) -> None:
        def run() -> None:
            try:
                self.erase()
            finally:
                connection.close()

        threading.Thread(target=run, daemon=True).start()

    def leftovers(self) -> list[str]:
        """Every file and folder of the twin in storage."""
        roots = [self.media_root / "twins" / self.key, self.media_root / "generations" / self.key]
        found = []
        for root in roots:
            if root.exists():
                found += [root.as_posix()] + [p.as_posix() for p in root.rglob("*")]
        return found


@pytest.mark.parametrize("when", ["during steps", "after the last step", "while writing"])
def test_erasing_a_twin_stops_its_generation_and_nothing_of_it_is_written_after(
    when, alice, face_models, media_root, monkeypatch
):
    twin, kept = full_twin(alice, "Erased", seed=1), full_twin(alice, "Kept", seed=2)
    kept_files = sorted(p.as_posix() for p in media_root.rglob("*") if str(kept.storage_key) in p.as_posix())
    steps = 40 if when == "during steps" else 4
    job = GenerationJobFactory(twin=twin, num_images=2, steps=steps)
    race = Race(twin, media_root)

    def slow_gpu(*, request: pipeline.ImageRequest, on_step=None) -> list[Image.Image]:
        for done in range(1, request.steps + 1):
            time.sleep(STEP_S)
            if race.erased.is_set():
                race.steps_after_erase += 1
            if on_step is not None:
                on_step(done, request.steps)  # raises GenerationCancelled once the job is cancelled or gone
            if when == "during steps" and done == 2:
                race.erase_in_background()
        if when == "after the last step":
            race.erase()
        return [Image.new("RGB", (256, 256), (seed % 256, 80, 140)) for seed in request.seeds]

    real_save = FileSystemStorage._save

    def timed_save(storage: FileSystemStorage, name: str, content):
        if race.key in name and name.startswith("generations/") and when == "while writing" and not race.writes:
            race.erase_in_background()
            time.sleep(0.3)  # the erasure is under way (or waiting for this write) before the file lands
        saved = real_save(storage, name, content)
        if race.key in name:
            race.writes.append((time.monotonic(), saved))
        return saved

    monkeypatch.setattr(pipeline, "generate_images", slow_gpu)
    monkeypatch.setattr(FileSystemStorage, "_save", timed_save)

    def work() -> None:
        try:
            run_generation(job_id=job.pk)
        except BaseException as exc:
            race.errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=work, daemon=True)
    started_at = time.monotonic()
    worker.start()
    assert race.erased.wait(timeout=30), "the erasure never started"
    seen_after_erase: set[str] = set()
    scans = 0
    while worker.is_alive() and time.monotonic() - started_at < 60:
        seen_after_erase.update(race.leftovers())
        scans += 1
        time.sleep(0.002)
    worker.join(timeout=30)

    assert not worker.is_alive() and race.errors == []
    assert race.erased_at is not None
    late = [name for finished, name in race.writes if finished > race.erased_at]
    assert late == [], f"written after the erasure returned ({when}): {late}"
    assert seen_after_erase == set(), f"in storage after the erasure returned ({when}, {scans} scans)"
    assert race.leftovers() == []
    assert race.steps_after_erase <= 1, f"the run went on for {race.steps_after_erase} steps after the erasure"
    assert not GenerationJob.objects.filter(pk=job.pk).exists() and not Twin.objects.filter(pk=twin.pk).exists()
    now_kept = sorted(p.as_posix() for p in media_root.rglob("*") if str(kept.storage_key) in p.as_posix())
    assert now_kept == kept_files


def test_erasing_cancels_the_twins_queued_and_running_jobs_before_their_rows_go(alice, settings):
    # What a worker sees in the moment before the rows go: its job cancelled (queued) or asked to stop
    # (running), so it stops at its next step even where it looked before the delete committed.
    from django.db.models.signals import pre_delete

    settings.GENERATION_MAX_CONCURRENT_JOBS = 10
    twin = full_twin(alice, "Busy", seed=4)
    queued = GenerationJobFactory(twin=twin)
    running = GenerationJobFactory(twin=twin, status=GenerationJob.Status.RUNNING)
    seen: dict[int, tuple[str, bool]] = {}

    def record(sender, instance: GenerationJob, **kwargs) -> None:
        seen[instance.pk] = tuple(GenerationJob.objects.values_list("status", "cancel_requested").get(pk=instance.pk))

    pre_delete.connect(record, sender=GenerationJob)
    try:
        delete_twin(twin=twin)
    finally:
        pre_delete.disconnect(record, sender=GenerationJob)
    assert seen[queued.pk] == ("cancelled", True)
    assert seen[running.pk] == ("running", True)
    assert not GenerationJob.objects.filter(twin_id=twin.pk).exists()
