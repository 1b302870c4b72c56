"""Generation use cases: submit, run (on the GPU worker), cancel, delete."""

from __future__ import annotations

import errno
import io
import logging
import secrets
import time
import unicodedata
import zipfile
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from generation.models import MAX_IMAGES_PER_JOB, GeneratedImage, GenerationJob
from generation.selectors import usage_of
from twins.models import Twin
from twinsite.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed
from twinsite.queue import enqueue_on_commit

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

Status = GenerationJob.Status
PROMPT_MAX_CHARS = 1000
STEPS_RANGE = (1, 150)
GUIDANCE_RANGE = (0.0, 30.0)
IDENTITY_STRENGTH_RANGE = (0.0, 2.0)
BEST_OF_RANGE = (1, 4)
SEED_MAX = 2**63 - 1 - 64  # leaves room for seed + index
PROGRESS_WRITE_INTERVAL_S = 0.5
# Errors of a storage that is full or refuses writes (for a message the user can act on).
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def clean_prompt(text: str | None, *, field: str, required: bool) -> str:
    """Drop control characters (keep newlines/tabs as spaces) and trim; enforce the length limit."""
    text = "".join(
        " " if ch in "\n\r\t" else ch for ch in (text or "") if ch in "\n\r\t" or unicodedata.category(ch)[0] != "C"
    ).strip()
    if required and not text:
        raise ValidationFailed(f"The {field.replace('_', ' ')} must not be empty.", fields={field: ["Required."]})
    if len(text) > PROMPT_MAX_CHARS:
        raise ValidationFailed(
            f"The {field.replace('_', ' ')} is {len(text)} characters; the limit is {PROMPT_MAX_CHARS}.",
            fields={field: [f"At most {PROMPT_MAX_CHARS} characters."]},
        )
    return text


def _in_range(name: str, value: float, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not (low <= value <= high):
        raise ValidationFailed(f"{name} must be between {low} and {high}, got {value}.",
                               fields={name: [f"Between {low} and {high}."]})


def _check_quota(*, owner: User, num_images: int) -> None:
    usage = usage_of(user=owner)
    if usage.active_jobs >= usage.max_concurrent_jobs:
        raise QuotaExceeded(
            f"You already have {usage.active_jobs} generation(s) queued or running; the limit is "
            f"{usage.max_concurrent_jobs}. Wait for one to finish or cancel it."
        )
    if usage.images_last_day + num_images > usage.images_per_day:
        raise QuotaExceeded(
            f"This would make {usage.images_last_day + num_images} images in 24 hours; the limit is "
            f"{usage.images_per_day}. Try again later or ask for more."
        )


def submit_generation(
    *,
    owner: User,
    twin: Twin,
    prompt: str,
    negative_prompt: str = "",
    num_images: int = 1,
    seed: int | None = None,
    steps: int | None = None,
    guidance: float | None = None,
    identity_strength: float = 0.8,
    best_of: int | None = None,
) -> GenerationJob:
    """Validate a request, create the job and queue it on the GPU cluster once the row is committed."""
    if twin.owner_id != owner.pk:
        raise NotFound("Twin not found.")
    if not twin.is_ready:
        raise Conflict(
            f"Twin {twin.name!r} is {twin.get_status_display().lower()}; only a ready twin can generate photos.",
            code="twin_not_ready",
        )
    prompt = clean_prompt(prompt, field="prompt", required=True)
    negative_prompt = clean_prompt(negative_prompt, field="negative_prompt", required=False)
    steps = settings.GENERATION_DEFAULT_STEPS if steps is None else steps
    guidance = settings.GENERATION_DEFAULT_GUIDANCE if guidance is None else guidance
    best_of = settings.GENERATION_DEFAULT_BEST_OF if best_of is None else best_of
    _in_range("num_images", num_images, (1, MAX_IMAGES_PER_JOB))
    _in_range("steps", steps, STEPS_RANGE)
    _in_range("guidance", guidance, GUIDANCE_RANGE)
    _in_range("identity_strength", identity_strength, IDENTITY_STRENGTH_RANGE)
    _in_range("best_of", best_of, BEST_OF_RANGE)
    if seed is None:
        seed = secrets.randbelow(2**31)
    _in_range("seed", seed, (0, SEED_MAX))

    with transaction.atomic():
        # Lock the owner's row so two simultaneous submissions can't both pass the quota.
        User.objects.select_for_update().filter(pk=owner.pk).first()
        _check_quota(owner=owner, num_images=num_images)
        job = GenerationJob.objects.create(
            owner=owner, twin=twin, prompt=prompt, negative_prompt=negative_prompt, num_images=num_images,
            seed=seed, steps=steps, guidance=guidance, identity_strength=identity_strength, best_of=best_of,
            width=settings.TWIN_IMAGE_SIZE, height=settings.TWIN_IMAGE_SIZE, progress_total=steps,
        )
        enqueue_on_commit("generation.tasks.run_generation", job.pk, cluster="gpu", name=f"generation-{job.pk}")
    logger.info("generation submitted", extra={"job": job.pk, "twin": twin.pk, "num_images": num_images})
    return job


def cancel_generation(*, job: GenerationJob) -> GenerationJob:
    """A queued job is cancelled at once; a running one stops at its next denoising step."""
    if GenerationJob.objects.filter(pk=job.pk, status=Status.QUEUED).update(
        status=Status.CANCELLED, cancel_requested=True, finished_at=timezone.now()
    ):
        job.refresh_from_db()
        return job
    if GenerationJob.objects.filter(pk=job.pk, status=Status.RUNNING).update(cancel_requested=True):
        job.refresh_from_db()
        return job
    job.refresh_from_db()
    raise Conflict(f"This generation already {job.status}; there is nothing to cancel.", code="already_finished")


def rerun_generation(*, job: GenerationJob) -> GenerationJob:
    """Support staff: run the same request again as a new job (same seed, so the same images)."""
    return submit_generation(
        owner=job.owner, twin=job.twin, prompt=job.prompt, negative_prompt=job.negative_prompt,
        num_images=job.num_images, seed=job.seed, steps=job.steps, guidance=job.guidance,
        identity_strength=job.identity_strength, best_of=job.best_of,
    )


def delete_generation(*, job: GenerationJob) -> None:
    if not job.is_finished:
        raise Conflict("Cancel this generation before deleting it.", code="still_running")
    paths = [image.file.name for image in job.images.all()]
    job.delete()
    transaction.on_commit(lambda: _delete_files(paths))


def delete_generated_image(*, image: GeneratedImage) -> None:
    path = image.file.name
    image.delete()
    transaction.on_commit(lambda: _delete_files([path]))


def _delete_files(paths: list[str]) -> None:
    for path in paths:
        try:
            default_storage.delete(path)
        except OSError:
            logger.warning("could not delete a generated file", extra={"path": path})


def zip_job_images(*, job: GenerationJob) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs don't compress further
        for image in job.images.all():
            with image.file.open("rb") as handle:
                archive.writestr(image.filename, handle.read())
    return buffer.getvalue()


# --- the worker side ---------------------------------------------------------------------------


class _Cancelled(Exception):
    pass


@dataclass
class _Candidate:
    seed: int
    image: Image
    score: float | None
    note: str


def _claim(job_id: int) -> GenerationJob | None:
    """Take the job for this worker, or return None when there is nothing to do.

    A job found `running` with a stale heartbeat was left by a worker that died (the ORM broker
    re-delivers it `retry` seconds later; the reaper re-queues it on brokers that don't): it is
    restarted from scratch, up to GENERATION_MAX_ATTEMPTS starts. A fresh heartbeat means a live
    worker has it, so a duplicate delivery does nothing.
    """
    now = timezone.now()
    claimed = GenerationJob.objects.filter(pk=job_id, status=Status.QUEUED).update(
        status=Status.RUNNING, started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, progress_step=0
    )
    if not claimed:
        stale_before = now - timedelta(seconds=settings.GENERATION_STALE_AFTER_S)
        job = GenerationJob.objects.filter(pk=job_id, status=Status.RUNNING, heartbeat_at__lt=stale_before).first()
        if job is None:
            return None  # finished, cancelled, deleted, or alive on another worker
        if job.attempts >= settings.GENERATION_MAX_ATTEMPTS:
            _discard_images(job)  # a worker killed while saving leaves files nothing references
            _finish_failed(job.pk, f"The worker stopped during this generation {job.attempts} times "
                                   "(out of memory?); it was not started again.")
            return None
        taken = GenerationJob.objects.filter(pk=job_id, status=Status.RUNNING, attempts=job.attempts).update(
            started_at=now, heartbeat_at=now, attempts=F("attempts") + 1, progress_step=0
        )
        if not taken:
            return None  # another delivery won the race
        logger.warning("restarting a generation left by a dead worker", extra={"job": job_id,
                                                                                "attempt": job.attempts + 1})
        _discard_images(job)
    return GenerationJob.objects.select_related("twin").get(pk=job_id)


def reap_stale_generations() -> int:
    """Re-queue running jobs whose worker died (their heartbeat stopped); `_claim` decides
    whether each restarts or fails for too many attempts. Runs on a django-q2 schedule."""
    stale_before = timezone.now() - timedelta(seconds=settings.GENERATION_STALE_AFTER_S)
    stale_ids = list(GenerationJob.objects.filter(status=Status.RUNNING, heartbeat_at__lt=stale_before)
                     .values_list("pk", flat=True))
    for job_id in stale_ids:
        enqueue_on_commit("generation.tasks.run_generation", job_id, cluster="gpu", name=f"generation-{job_id}-reaped")
    return len(stale_ids)


def _heartbeat(job_id: int, **fields: object) -> None:
    GenerationJob.objects.filter(pk=job_id).update(heartbeat_at=timezone.now(), **fields)


def _discard_images(job: GenerationJob) -> None:
    """Remove what an interrupted attempt left behind, so a restart never duplicates images."""
    paths = list(job.images.values_list("file", flat=True))
    job.images.all().delete()
    _delete_job_files(job, paths)


def _delete_job_files(job: GenerationJob, saved_paths: list[str]) -> None:
    """After a failed or cancelled run: the files it saved, and whatever else is in the job's folder
    (a write that failed halfway, on a full disk, leaves part of a file that was never listed)."""
    prefix = f"generations/{job.twin.storage_key}/{job.pk}"
    paths = set(saved_paths)
    try:
        _, files = default_storage.listdir(prefix)
        paths.update(f"{prefix}/{name}" for name in files)
    except OSError:
        pass
    _delete_files(sorted(paths))


def _finish_failed(job_id: int, message: str) -> None:
    GenerationJob.objects.filter(pk=job_id).update(status=Status.FAILED, error=message[:2000],
                                                   finished_at=timezone.now())


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
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "out of memory" in str(exc).lower():
        return "The GPU ran out of memory. Try fewer images or a smaller best-of; the worker freed its memory."
    if isinstance(exc, OSError) and exc.errno in _STORAGE_ERRNOS:
        return ("Generation failed: the images could not be saved because the server's storage is full or not "
                f"writable ({exc.strerror or name}). Nothing was kept; try again later.")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else name
    return f"Generation failed: {text[:500]}"


def run_generation(*, job_id: int) -> None:
    """Run a queued job to the end: generate, score, save. Called by the `gpu` cluster's task."""
    job = _claim(job_id)
    if job is None:
        return
    from generation import pipeline, scoring

    twin = job.twin
    stages: dict[str, float] = {}
    saved_paths: list[str] = []
    try:
        started = time.monotonic()
        embedding = _twin_embedding(twin)
        reference = _reference_face(twin)
        size = pipeline.default_image_size()
        candidates_per_image = job.best_of
        seeds = [job.seed + index for index in range(job.num_images * candidates_per_image)]
        batches = [seeds[i:i + MAX_IMAGES_PER_JOB] for i in range(0, len(seeds), MAX_IMAGES_PER_JOB)]
        total = job.steps * len(batches)
        _heartbeat(job.pk, progress_total=total, width=size, height=size, backend=settings.TWIN_BACKEND,
                   model_versions=pipeline.backend_versions())
        stages["prepare"] = time.monotonic() - started

        progress = _ProgressWriter(job_id=job.pk, total=total)
        images: list[tuple[int, Image]] = []
        started = time.monotonic()
        for batch_number, batch_seeds in enumerate(batches):
            request = pipeline.ImageRequest(
                prompt=job.prompt, negative_prompt=job.negative_prompt, seeds=batch_seeds, steps=job.steps,
                guidance=job.guidance, identity_strength=job.identity_strength, id_embedding=embedding,
                reference_face=reference, width=size, height=size, embedding_model=twin.embedding_model,
            )
            offset = batch_number * job.steps
            batch = pipeline.generate_images(request=request,
                                             on_step=lambda done, _total, o=offset: progress.step(o + done))
            images.extend(zip(batch_seeds, batch, strict=True))
        stages["generate"] = time.monotonic() - started
        _heartbeat(job.pk)

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
            row = GeneratedImage(job=job, index=index, seed=candidate.seed, identity_score=candidate.score,
                                 score_note=candidate.note[:200], width=candidate.image.width,
                                 height=candidate.image.height)
            row.file.save(row.filename, ContentFile(buffer.getvalue()), save=False)
            saved_paths.append(row.file.name)
            rows.append(row)
        with transaction.atomic():
            # Images become visible together with `succeeded`, never one by one.
            if not GenerationJob.objects.filter(pk=job.pk, status=Status.RUNNING, cancel_requested=False).exists():
                raise _Cancelled
            GeneratedImage.objects.bulk_create(rows)
            stages["save"] = time.monotonic() - started
            GenerationJob.objects.filter(pk=job.pk).update(
                status=Status.SUCCEEDED, finished_at=timezone.now(), progress_step=total,
                stage_seconds={k: round(v, 3) for k, v in stages.items()}, error="",
            )
        logger.info("generation succeeded", extra={"job": job.pk, "seconds": stages})
    except (_Cancelled, pipeline.GenerationCancelled):
        _delete_job_files(job, saved_paths)
        GenerationJob.objects.filter(pk=job.pk).update(status=Status.CANCELLED, finished_at=timezone.now(),
                                                       stage_seconds={k: round(v, 3) for k, v in stages.items()})
        logger.info("generation cancelled", extra={"job": job.pk})
    except Exception as exc:
        logger.exception("generation failed", extra={"job": job.pk})
        _delete_job_files(job, saved_paths)
        _finish_failed(job.pk, _readable_error(exc))
        pipeline.release_memory()


def _best_candidates(candidates: list[_Candidate], *, keep: int, group: int) -> list[_Candidate]:
    """best_of: from each group of `group` candidates keep the one that looks most like the twin."""
    if group == 1:
        return candidates[:keep]
    chosen = []
    for start in range(0, keep * group, group):
        pool = candidates[start:start + group]
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
        if GenerationJob.objects.filter(pk=self.job_id, cancel_requested=True).exists():
            raise GenerationCancelled(f"job {self.job_id} cancelled at step {done}")


def _twin_embedding(twin: Twin):
    from twins.faces import embedding_from_bytes

    if not twin.embedding or not twin.embedding_dim:
        raise ValueError("the twin has no identity embedding; enroll it again")
    return embedding_from_bytes(twin.embedding, twin.embedding_dim)


def _reference_face(twin: Twin) -> Image | None:
    from PIL import Image as PILImage

    if not twin.reference_face:
        return None
    with twin.reference_face.open("rb") as handle:
        return PILImage.open(handle).convert("RGB")
