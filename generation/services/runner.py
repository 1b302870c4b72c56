"""The worker side of generation: run a claimed job to the end (generate, score, save), or fail it
with a message the user can act on. The claim, heartbeat and reaper are twinsite/jobs.py.
"""

from __future__ import annotations

import errno
import io
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from generation.models import GeneratedImage, GenerationJob, UsageRecord, job_folder
from generation.services.requests import RUN_TASK
from twins.models import Twin
from twinsite import jobs
from twinsite.storage import delete_files, delete_tree, store_file

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

Status = GenerationJob.Status

PROGRESS_WRITE_INTERVAL_S = 0.5

# Errors of a storage that is full or refuses writes (for a message the user can act on).
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


class _Cancelled(Exception):
    pass


class _NotOurs(Exception):
    """The job is no longer this run's: erased, or restarted on another worker after this one was
    thought dead. The run stops and touches nothing of the job but the files it saved itself."""


@dataclass
class _Candidate:
    seed: int
    image: Image
    score: float | None
    note: str


# A generation job: `attempts` counts its starts, `heartbeat_at` is written with progress and by
# the worker's heartbeat thread, `worker` names the process running it, and
# GENERATION_STALE_AFTER_S of silence means that process is gone.
GENERATION = jobs.JobKind(
    model=GenerationJob,
    active={"status__in": GenerationJob.ACTIVE_STATUSES},
    started={"status": Status.RUNNING},
    attempts_field="attempts",
    heartbeat_field="heartbeat_at",
    holder_field="worker",
    stale_after_s=lambda: settings.GENERATION_STALE_AFTER_S,
    task_path=RUN_TASK,
    task_label="generation",
)


def _claim(job_id: int) -> tuple[GenerationJob, int] | None:
    """Take the job for this worker (a restart, from scratch, if a dead worker left it), or None.

    After GENERATION_MAX_ATTEMPTS starts the job fails instead: a job that kills its worker every
    time (out of memory, say) must not loop forever, and django-q2 does not count killed attempts.
    """
    attempt = jobs.claim(
        GENERATION, job_id, start={"status": Status.RUNNING, "started_at": timezone.now(), "progress_step": 0}
    )
    if attempt is None:
        return None
    job = GenerationJob.objects.select_related("twin").get(pk=job_id)
    if attempt > 1:
        _discard_images(job)  # what the interrupted attempt saved: a restart never duplicates images
    if attempt > settings.GENERATION_MAX_ATTEMPTS:
        _finish_failed(
            job.pk,
            f"The worker stopped during this generation {attempt - 1} times "
            "(out of memory?); it was not started again.",
        )
        jobs.let_go(GENERATION, job.pk)
        return None
    return job, attempt


def reap_stale_generations() -> int:
    """Re-queue running jobs whose worker died (their heartbeat stopped); `_claim` decides
    whether each restarts or fails for too many attempts. Runs on a django-q2 schedule."""
    return jobs.reap_stale(GENERATION)


def _heartbeat(job_id: int, **fields: object) -> None:
    if not jobs.heartbeat(GENERATION, job_id, **fields):
        raise _NotOurs


def _discard_images(job: GenerationJob) -> None:
    """Remove what an interrupted attempt left behind, so a restart never duplicates images."""
    paths = list(job.images.values_list("file", flat=True))
    job.images.all().delete()
    _delete_job_files(job, paths)


def _delete_job_files(job: GenerationJob, saved_paths: list[str]) -> None:
    """After a failed or cancelled run: the files it saved, and whatever else is in the job's folder
    (a write that failed halfway, on a full disk, leaves part of a file that was never listed)."""
    delete_files(default_storage, saved_paths)
    delete_tree(default_storage, job_folder(job))


def _finish_failed(job_id: int, message: str) -> None:
    GenerationJob.objects.filter(pk=job_id).update(
        status=Status.FAILED, error=message[:2000], finished_at=timezone.now()
    )


MODELS_UNAVAILABLE_MESSAGE = (
    "Photos can't be generated right now: the {what} models are not installed on the worker. "
    "The site's staff can see this too; try again once it is fixed."
)


def _readable_error(exc: BaseException) -> str:
    from generation import pipeline
    from twins import faces

    # What is missing where (paths, settings) goes to the log and /system-status; the user gets plain words.
    if isinstance(exc, faces.FaceModelUnavailable):
        return MODELS_UNAVAILABLE_MESSAGE.format(what="face")
    if isinstance(exc, pipeline.ModelWeightsMissing):
        return MODELS_UNAVAILABLE_MESSAGE.format(what="generation")
    if isinstance(exc, pipeline.MissingReferenceFace):
        return pipeline.MISSING_REFERENCE_FACE_MESSAGE
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "The GPU ran out of memory. Try fewer images or a smaller best-of; the worker freed its memory."
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return (
            "Generation failed: the images could not be saved because the server's storage is full or not "
            f"writable ({exc.strerror or name}). Nothing was kept; try again later."
        )
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return f"Generation failed: {text[:500]}"


def run_generation(*, job_id: int) -> None:
    """Run a queued job to the end: generate, score, save. Called by the `gpu` cluster's task."""
    claimed = _claim(job_id)
    if claimed is None:
        return
    job, attempt = claimed
    try:
        _run(job, attempt=attempt)
    finally:
        jobs.let_go(GENERATION, job.pk)


def _run(job: GenerationJob, *, attempt: int) -> None:
    from generation import pipeline, scoring

    twin = job.twin
    stages: dict[str, float] = {}
    saved_paths: list[str] = []
    try:
        started = time.monotonic()
        embedding = _twin_embedding(twin)
        reference = _load_reference_face(twin)
        if reference is None:  # never a stand-in image: that would quietly make "Plus" plain FaceID
            raise pipeline.MissingReferenceFace(pipeline.MISSING_REFERENCE_FACE_MESSAGE)
        size = pipeline.default_image_size()
        candidates_per_image = job.best_of
        seeds = [job.seed + index for index in range(job.num_images * candidates_per_image)]
        # One request per pipeline call, planned where the pipeline plans them, so the job's
        # progress (steps x calls, owned here) is exactly the steps that run.
        calls = pipeline.plan_calls(seeds)
        total = job.steps * len(calls)
        _heartbeat(job.pk, progress_total=total, width=size, height=size, backend=settings.TWIN_BACKEND)
        stages["prepare"] = time.monotonic() - started

        progress = _ProgressWriter(job_id=job.pk, total=total)
        images: list[tuple[int, Image]] = []
        started = time.monotonic()
        for call_number, call_seeds in enumerate(calls):
            request = pipeline.ImageRequest(
                prompt=job.prompt,
                negative_prompt=job.negative_prompt,
                seeds=call_seeds,
                steps=job.steps,
                guidance=job.guidance,
                identity_strength=job.identity_strength,
                face_structure=job.face_structure,
                id_embedding=embedding,
                reference_face=reference,
                width=size,
                height=size,
                embedding_model=twin.embedding_model,
                preset=job.preset,
            )
            offset = call_number * job.steps
            batch = pipeline.generate_images(
                request=request, on_step=lambda done, _total, o=offset: progress.step(o + done)
            )
            images.extend(zip(call_seeds, batch, strict=True))
        stages["generate"] = time.monotonic() - started
        # Written once the pipeline ran, so a cold worker records what it loaded, not what settings name.
        # The job's recipe too: what its calls asked the pipeline for (provenance reads the rest from the pipeline).
        _heartbeat(job.pk, model_versions={**(pipeline.run_record() or {}), "recipe": job.preset})

        started = time.monotonic()
        candidates = []
        for seed, image in images:
            result = scoring.score_identity(image=image, twin_embedding=embedding)
            candidates.append(_Candidate(seed=seed, image=image, score=result.score, note=result.note))
        chosen = _best_candidates(candidates, keep=job.num_images, group=candidates_per_image)
        stages["score"] = time.monotonic() - started
        _heartbeat(job.pk)

        started = time.monotonic()
        rows = []
        for index, candidate in enumerate(chosen):
            buffer = io.BytesIO()
            candidate.image.save(buffer, format="PNG")
            row = GeneratedImage(
                job=job,
                index=index,
                seed=candidate.seed,
                identity_score=candidate.score,
                score_note=candidate.note[:200],
                width=candidate.image.width,
                height=candidate.image.height,
            )
            _write_image_if_still_wanted(job, row, buffer.getvalue(), saved_paths)
            rows.append(row)
        with transaction.atomic():
            # Images become visible together with `succeeded`, never one by one, and only from the
            # attempt that holds the job: a run thought dead and restarted elsewhere adds nothing. The
            # conditional update holds the job's row, so an erasure racing it waits, then finds them to delete.
            if jobs.still_held(GENERATION, job.pk, attempt=attempt).select_for_update().first() is None:
                raise _NotOurs
            stages["save"] = time.monotonic() - started
            if not _still_wanted(job.pk).update(
                status=Status.SUCCEEDED,
                finished_at=timezone.now(),
                progress_step=total,
                stage_seconds={k: round(v, 3) for k, v in stages.items()},
                error="",
            ):
                raise _Cancelled
            GeneratedImage.objects.bulk_create(rows)
            # The ledger the daily quota counts: deleting these images or the job later keeps it.
            UsageRecord.objects.create(owner_id=job.owner_id, job=job, images=len(rows))
        logger.info("generation succeeded", extra={"job": job.pk, "seconds": stages})
    except _NotOurs:
        logger.warning("generation no longer ours (restarted elsewhere, or erased); stopping", extra={"job": job.pk})
        if GenerationJob.objects.filter(pk=job.pk).exists():
            delete_files(default_storage, saved_paths)  # another attempt owns the job and its folder now
        else:
            _delete_job_files(job, saved_paths)  # erased with its twin: nothing of it may stay, folder included
    except (_Cancelled, pipeline.GenerationCancelled):
        _delete_job_files(job, saved_paths)
        GenerationJob.objects.filter(pk=job.pk).update(
            status=Status.CANCELLED,
            finished_at=timezone.now(),
            stage_seconds={k: round(v, 3) for k, v in stages.items()},
        )
        logger.info("generation cancelled", extra={"job": job.pk})
    except Exception as exc:
        logger.exception("generation failed", extra={"job": job.pk})
        pipeline.release_memory()
        if not jobs.still_held(GENERATION, job.pk, attempt=attempt).exists():
            delete_files(default_storage, saved_paths)  # another attempt owns the job and its folder now
            return
        _delete_job_files(job, saved_paths)
        _finish_failed(job.pk, _readable_error(exc))


def _still_wanted(job_id: int) -> QuerySet[GenerationJob]:
    """The job, while it runs and nobody cancelled it: empty once cancelled, or gone with an erased twin."""
    return GenerationJob.objects.filter(pk=job_id, status=Status.RUNNING, cancel_requested=False)


def _write_image_if_still_wanted(job: GenerationJob, row: GeneratedImage, content: bytes, written: list[str]) -> None:
    """Write one image, unless its job was cancelled or its twin erased meanwhile (then _Cancelled).

    The check is an update, not a read: it holds the job's row (on SQLite, the database's write lock)
    until the file is written, so an erasure either came first and nothing is written, or waits for
    this write and then sweeps the file with the rest of the twin. Nothing of an erased twin is
    written after its erasure returned.
    """
    with transaction.atomic():
        if not _still_wanted(job.pk).update(heartbeat_at=timezone.now()):
            raise _Cancelled
        store_file(row.file, content, hint=row.filename, written=written)


def _best_candidates(candidates: list[_Candidate], *, keep: int, group: int) -> list[_Candidate]:
    """best_of: from each group of `group` candidates keep the one that looks most like the twin."""
    if group == 1:
        return candidates[:keep]
    chosen = []
    for start in range(0, keep * group, group):
        pool = candidates[start : start + group]
        chosen.append(max(pool, key=lambda c: -2.0 if c.score is None else c.score))
    return chosen


class _ProgressWriter:
    """Writes step/total at most every PROGRESS_WRITE_INTERVAL_S and checks for cancel at every step."""

    def __init__(self, *, job_id: int, total: int):
        self.job_id = job_id
        self.total = total
        self.last_write = 0.0

    def step(self, done: int) -> None:
        from generation.pipeline import GenerationCancelled

        now = time.monotonic()
        if done >= self.total or now - self.last_write >= PROGRESS_WRITE_INTERVAL_S:
            self.last_write = now
            _heartbeat(self.job_id, progress_step=done)
        # A job that is gone had its twin erased: it stops as a cancelled one does.
        if not GenerationJob.objects.filter(pk=self.job_id, cancel_requested=False).exists():
            raise GenerationCancelled(f"job {self.job_id} cancelled at step {done}")


def _twin_embedding(twin: Twin):
    from twins.faces import embedding_from_bytes

    if not twin.embedding or not twin.embedding_dim:
        raise ValueError("the twin has no identity embedding; enroll it again")
    return embedding_from_bytes(twin.embedding, twin.embedding_dim)


def _load_reference_face(twin: Twin) -> Image | None:
    from PIL import Image as PILImage

    if not twin.reference_face:
        return None
    try:
        with twin.reference_face.open("rb") as handle:
            return PILImage.open(handle).convert("RGB")
    except FileNotFoundError:
        logger.error("reference face file missing", extra={"twin": twin.pk, "file": twin.reference_face.name})
        return None
