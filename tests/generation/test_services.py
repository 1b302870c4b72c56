"""run_generation on the worker: cancel, best-of and progress, with only the GPU call replaced.

`generation.pipeline.generate_images` answers with real photos and reports its steps the way
the real pipeline does (see FakeGpu); the job rows, storage, and the identity scoring with the
real small face pack are the product's own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings
from PIL import Image

from generation import pipeline
from generation.models import GeneratedImage, GenerationJob
from generation.scoring import score_identity
from generation.services import cancel_generation, run_generation
from tests.factories import GenerationJobFactory, TwinFactory
from tests.reliability.support import stored_files
from twins import faces
from twins.models import Twin

Status = GenerationJob.Status


def _open(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


class FakeGpu:
    """Stands in for `pipeline.generate_images`: one real photo per seed, and on_step(done, total)
    exactly as `run_pipeline` calls it: every step of every pipeline call, where the seeds are split
    into calls of at most TWIN_MAX_BATCH_IMAGES (so total = steps x calls). Records what it saw."""

    def __init__(self, photo_for_seed: Callable[[int], Path], job_id: int):
        self.photo_for_seed = photo_for_seed
        self.job_id = job_id
        self.calls: list[list[int]] = []
        self.steps: list[int] = []  # every step reported, in order, across calls
        self.rows: list[tuple[int, int]] = []  # (progress_step, progress_total) read after every step
        self.before_step: Callable[[int], None] | None = None  # called with each step number before it runs
        self.after_call: Callable[[], None] | None = None

    def __call__(self, *, request: pipeline.ImageRequest, on_step: Callable[[int, int], None] | None = None):
        self.calls.append(list(request.seeds))
        batch = max(1, settings.TWIN_MAX_BATCH_IMAGES)
        total = request.steps * math.ceil(len(request.seeds) / batch)
        for done in range(1, total + 1):
            if self.before_step is not None:
                self.before_step(done)
            self.steps.append(done)
            if on_step is not None:
                on_step(done, total)  # raises GenerationCancelled when the job was cancelled
            self.rows.append(
                tuple(GenerationJob.objects.values_list("progress_step", "progress_total").get(pk=self.job_id))
            )
        if self.after_call is not None:
            self.after_call()
        return [_open(self.photo_for_seed(seed)) for seed in request.seeds]


@pytest.fixture
def bush_photos(faces_dir: Path) -> list[Path]:
    return sorted((faces_dir / "george_w_bush").glob("*.jpg"))


@pytest.fixture
def bush_twin(alice, face_models, bush_photos) -> Twin:
    """A ready twin whose identity is the normalised mean of 3 real photos (as enrollment makes it)."""
    vectors = np.stack([faces.largest_face_embedding(_open(p))[0] for p in bush_photos[:3]])
    identity = faces.normalize(vectors.mean(axis=0))
    return TwinFactory(
        owner=alice,
        ready=True,
        embedding=faces.embedding_to_bytes(identity),
        embedding_dim=identity.size,
        embedding_model="scrfd500m_mbf",
    )


@pytest.fixture
def gpu(monkeypatch, bush_photos) -> Callable[..., FakeGpu]:
    def install(job: GenerationJob, photo_for_seed: Callable[[int], Path] | None = None) -> FakeGpu:
        fake = FakeGpu(photo_for_seed or (lambda seed: bush_photos[5]), job.pk)
        monkeypatch.setattr(pipeline, "generate_images", fake)
        return fake

    return install


# --- cancel ---------------------------------------------------------------------------------------


def test_cancelling_a_running_job_stops_it_at_the_next_step(bush_twin, gpu, media_root, settings):
    settings.TWIN_MAX_BATCH_IMAGES = 4
    # 2 images x best of 3 = 6 seeds: two pipeline calls of 4 steps each, if nothing stopped it.
    job = GenerationJobFactory(twin=bush_twin, num_images=2, best_of=3, steps=4)
    fake = gpu(job)

    def cancel_at_step_3(done: int) -> None:
        if done == 3:  # the owner presses cancel while step 3 runs (the real service, as the web calls it)
            assert cancel_generation(job=GenerationJob.objects.get(pk=job.pk)).status == Status.RUNNING

    fake.before_step = cancel_at_step_3
    run_generation(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Status.CANCELLED and job.finished_at is not None
    assert fake.steps == [1, 2, 3], f"the run went on after the cancel at step 3: steps {fake.steps}"
    assert len(fake.calls) == 1  # the second batch never started
    assert job.progress_step <= 3
    assert not GeneratedImage.objects.filter(job_id=job.pk).exists()
    assert stored_files(media_root) == {bush_twin.reference_face.name}  # only the twin's own reference face


def test_a_cancel_after_the_last_step_keeps_no_image_and_no_file(bush_twin, gpu, media_root):
    # Generation is over when the cancel arrives: the images are scored and written, then thrown away.
    job = GenerationJobFactory(twin=bush_twin, num_images=2, steps=2)
    fake = gpu(job)
    fake.after_call = lambda: cancel_generation(job=GenerationJob.objects.get(pk=job.pk))
    run_generation(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Status.CANCELLED
    assert fake.steps == [1, 2]
    assert not GeneratedImage.objects.filter(job_id=job.pk).exists()
    assert stored_files(media_root) == {bush_twin.reference_face.name}  # only the twin's own reference face


# --- best of N ------------------------------------------------------------------------------------


def test_best_of_keeps_the_candidate_that_looks_most_like_the_twin(bush_twin, gpu, bush_photos, faces_dir, media_root):
    identity = faces.embedding_from_bytes(bush_twin.embedding, bush_twin.embedding_dim)
    blair = sorted((faces_dir / "tony_blair").glob("*.jpg"))
    no_face = faces_dir / "_hard" / "noface_coffee.png"
    groups = [[bush_photos[3], bush_photos[4], blair[1]], [bush_photos[6], bush_photos[8], no_face]]

    scores = {p: score_identity(image=_open(p), twin_embedding=identity).score for group in groups for p in group}

    def score_of(path: Path) -> float:
        return -2.0 if scores[path] is None else scores[path]  # no face ranks last, as in the product

    # Each group in the order (second best, best, worst), so keeping the first, the last or the
    # lowest candidate all keep the wrong one. Scores are the real face model's, measured here.
    ordered = []
    for group in groups:
        ranked = sorted(group, key=score_of)
        assert len({score_of(p) for p in ranked}) == 3, "the photos must score differently"
        ordered.append([ranked[1], ranked[2], ranked[0]])
    candidates = [path for group in ordered for path in group]

    job = GenerationJobFactory(twin=bush_twin, num_images=2, best_of=3, steps=2, seed=500)
    gpu(job, photo_for_seed=lambda seed: candidates[seed - 500])
    run_generation(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED, job.error
    kept = list(GeneratedImage.objects.filter(job_id=job.pk).order_by("index"))
    assert [image.index for image in kept] == [0, 1]
    for image, group, first_seed in zip(kept, ordered, (500, 503), strict=True):
        best = group[1]
        assert image.seed == first_seed + 1, f"kept seed {image.seed}, the best of its group is {first_seed + 1}"
        assert image.identity_score == pytest.approx(score_of(best), abs=1e-4)
        assert image.identity_score > max(score_of(p) for p in (group[0], group[2]))
        with image.file.open("rb") as handle:
            assert np.array_equal(np.asarray(_open(handle)), np.asarray(_open(best)))  # the best photo itself
    # The losers are never written (the other file is the twin's reference face).
    assert stored_files(media_root) == {image.file.name for image in kept} | {bush_twin.reference_face.name}


# --- progress ------------------------------------------------------------------------------------

# The runner plans its pipeline calls with the pipeline's own plan (pipeline.plan_calls) and owns the
# job-level done/total (steps x calls), so progress ends exactly at its total however the seeds split.


@pytest.mark.parametrize(
    ("num_images", "best_of", "max_batch"),
    [
        pytest.param(1, 1, 4, id="one-call"),
        pytest.param(2, 3, 4, id="two-batches-of-the-job"),
        pytest.param(
            3,
            1,
            2,
            id="one-batch-two-pipeline-calls",
        ),
        pytest.param(
            4,
            2,
            2,
            id="two-batches-four-pipeline-calls",
        ),
    ],
)
def test_progress_never_passes_its_total_and_ends_at_it(bush_twin, gpu, settings, num_images, best_of, max_batch):
    settings.TWIN_MAX_BATCH_IMAGES = max_batch
    job = GenerationJobFactory(twin=bush_twin, num_images=num_images, best_of=best_of, steps=3)
    fake = gpu(job)
    run_generation(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED, job.error
    assert fake.rows, "the pipeline reported no step"
    total = job.progress_total
    assert total > 0
    for step, row_total in fake.rows:
        assert row_total == total
        assert 0 <= step <= total, f"progress {step}/{total} during the run (all written: {fake.rows})"
    written = [step for step, _ in fake.rows]
    assert written == sorted(written), f"progress went backwards: {written}"
    assert total == len(fake.steps)  # 100% is every step the pipeline ran, no more, no less
    assert job.progress_step == total
    assert job.images.count() == num_images


# --- the call size: one place decides it -----------------------------------------------------------


@pytest.mark.parametrize(
    ("max_batch", "expected"), [(8, [[1234 + i for i in range(8)]]), (16, [[1234 + i for i in range(8)]])]
)
def test_a_batch_size_above_four_runs_the_whole_job_in_one_call(bush_twin, gpu, settings, max_batch, expected):
    """TWIN_MAX_BATCH_IMAGES above 4: the runner no longer cuts the seeds into 4s (which on a compiled
    UNet warmed for the full call size made every image run alone)."""
    settings.TWIN_MAX_BATCH_IMAGES = max_batch
    job = GenerationJobFactory(twin=bush_twin, num_images=4, best_of=2, steps=2)
    fake = gpu(job)
    run_generation(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED, job.error
    assert fake.calls == expected
    assert job.progress_total == 2 and job.progress_step == 2


def test_every_call_of_a_compiled_worker_is_a_shape_warm_up_compiled(settings):
    """The calls a job makes on a compiled UNet are only the shapes warm_up ran (1 and the call size)."""
    for max_batch in range(1, 17):
        settings.TWIN_MAX_BATCH_IMAGES = max_batch
        warm = set(pipeline.warm_batch_counts())
        for count in range(1, 17):
            calls = pipeline.pipeline_calls(list(range(count)), compiled=True)
            assert {len(call) for call in calls} <= warm, (max_batch, count, calls)
            assert sum(len(call) for call in calls) == count


# --- the reference face --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["never-had-one", "file-gone"])
def test_a_twin_without_a_reference_face_fails_its_job_with_what_to_do(bush_twin, gpu, client, how):
    if how == "never-had-one":
        bush_twin.reference_face.delete(save=True)  # enrolled before reference faces were kept
    else:
        bush_twin.reference_face.storage.delete(bush_twin.reference_face.name)
    job = GenerationJobFactory(twin=bush_twin, num_images=1, steps=2)
    fake = gpu(job)
    run_generation(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Status.FAILED
    assert job.error == pipeline.MISSING_REFERENCE_FACE_MESSAGE and "Enroll the twin again" in job.error
    assert fake.calls == []  # never generated without it (no grey stand-in)
    # Shown to its owner: on the job page and in the API.
    client.force_login(bush_twin.owner)
    assert "Enroll the twin again" in client.get(f"/generations/{job.pk}/").content.decode()
    assert "Enroll the twin again" in client.get(f"/api/generations/{job.pk}/").json()["error"]


# --- the record of what ran ------------------------------------------------------------------------


def test_the_job_records_what_the_loaded_pipeline_reports_not_what_settings_name(bush_twin, gpu, monkeypatch):
    """A cold worker loads in its first pipeline call: the record is taken after it, from the loaded pipeline."""
    job = GenerationJobFactory(twin=bush_twin, num_images=1, steps=2)
    fake = gpu(job)
    seen_before_generating: list[dict] = []
    fake.before_step = lambda done: seen_before_generating.append(
        GenerationJob.objects.values_list("model_versions", flat=True).get(pk=job.pk)
    )
    record = {"scheduler": "WhatWasLoaded", "models": {"base_model": {"revision": "abc"}}}
    monkeypatch.setattr(pipeline, "run_record", lambda: record)
    run_generation(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == Status.SUCCEEDED, job.error
    assert seen_before_generating[0] == {}  # no configured labels standing in before anything is loaded
    assert job.model_versions == {**record, "recipe": "default"}  # plus the recipe the job asked for


def test_the_face_structure_weight_reaches_the_pipeline(bush_twin, gpu, monkeypatch):
    job = GenerationJobFactory(twin=bush_twin, num_images=1, steps=2, face_structure=0.4)
    fake = gpu(job)
    seen: list[float] = []
    original = fake.__call__

    def spy(*, request, on_step=None):
        seen.append(request.face_structure)
        return original(request=request, on_step=on_step)

    monkeypatch.setattr(pipeline, "generate_images", spy)
    run_generation(job_id=job.pk)
    assert seen == [0.4]
