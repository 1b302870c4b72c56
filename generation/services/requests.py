"""The web side of generation: validate and submit a request, cancel, rerun, delete, zip."""

from __future__ import annotations

import io
import logging
import secrets
import unicodedata
import zipfile
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from accounts.models import User
from generation.models import MAX_IMAGES_PER_JOB, GeneratedImage, GenerationJob, job_folder
from generation.pipeline.identity import FACE_STRUCTURE_DEFAULT
from generation.pipeline.presets import RECIPES
from generation.selectors import usage_of
from twins.models import Twin
from twinsite.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed
from twinsite.queue import enqueue_on_commit
from twinsite.storage import sweep

if TYPE_CHECKING:
    pass

RUN_TASK = "generation.tasks.run_generation"

logger = logging.getLogger(__name__)

Status = GenerationJob.Status

PROMPT_MAX_CHARS = 1000

STEPS_RANGE = (1, 150)

GUIDANCE_RANGE = (0.0, 30.0)

IDENTITY_STRENGTH_RANGE = (0.0, 2.0)

# FaceID Plus v2's face-structure weight (s_scale; its default is the recipe's, 1.0); 0 leaves only the id tokens.
FACE_STRUCTURE_RANGE = (0.0, 2.0)

BEST_OF_RANGE = (1, 4)

SEED_MAX = 2**63 - 1 - 64  # leaves room for seed + index


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
        raise ValidationFailed(
            f"{name} must be between {low} and {high}, got {value}.", fields={name: [f"Between {low} and {high}."]}
        )


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
    face_structure: float | None = None,
    best_of: int | None = None,
    preset: str = GenerationJob.Preset.DEFAULT,
) -> GenerationJob:
    """Validate a request, create the job and queue it on the GPU cluster once the row is committed.

    A preset whose distilled LoRA fixes the steps (turbo) overrides `steps`, and gives its own
    guidance unless one is asked for: the job records what ran.
    """
    if twin.owner_id != owner.pk:
        raise NotFound("Twin not found.")
    if not twin.is_ready:
        raise Conflict(
            f"Twin {twin.name!r} is {twin.get_status_display().lower()}; only a ready twin can generate photos.",
            code="twin_not_ready",
        )
    prompt = clean_prompt(prompt, field="prompt", required=True)
    negative_prompt = clean_prompt(negative_prompt, field="negative_prompt", required=False)
    if preset not in GenerationJob.Preset.values:
        choices = ", ".join(GenerationJob.Preset.values)
        raise ValidationFailed(
            f"preset must be one of {choices}, got {preset!r}.", fields={"preset": [f"One of {choices}."]}
        )
    recipe = RECIPES[preset]
    steps = recipe.steps or (settings.GENERATION_DEFAULT_STEPS if steps is None else steps)
    if guidance is None:
        guidance = settings.GENERATION_DEFAULT_GUIDANCE if recipe.guidance is None else recipe.guidance
    best_of = settings.GENERATION_DEFAULT_BEST_OF if best_of is None else best_of
    face_structure = FACE_STRUCTURE_DEFAULT if face_structure is None else face_structure
    _in_range("num_images", num_images, (1, MAX_IMAGES_PER_JOB))
    _in_range("steps", steps, STEPS_RANGE)
    _in_range("guidance", guidance, GUIDANCE_RANGE)
    _in_range("identity_strength", identity_strength, IDENTITY_STRENGTH_RANGE)
    _in_range("face_structure", face_structure, FACE_STRUCTURE_RANGE)
    _in_range("best_of", best_of, BEST_OF_RANGE)
    if seed is None:
        seed = secrets.randbelow(2**31)
    _in_range("seed", seed, (0, SEED_MAX))

    with transaction.atomic():
        # Lock the owner's row so two simultaneous submissions can't both pass the quota.
        User.objects.select_for_update().filter(pk=owner.pk).first()
        _check_quota(owner=owner, num_images=num_images)
        job = GenerationJob.objects.create(
            owner=owner,
            twin=twin,
            prompt=prompt,
            negative_prompt=negative_prompt,
            num_images=num_images,
            seed=seed,
            steps=steps,
            guidance=guidance,
            identity_strength=identity_strength,
            face_structure=face_structure,
            best_of=best_of,
            preset=preset,
            width=settings.TWIN_IMAGE_SIZE,
            height=settings.TWIN_IMAGE_SIZE,
            progress_total=steps,
        )
        enqueue_on_commit(RUN_TASK, job.pk, cluster="gpu", name=f"generation-{job.pk}")
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
        owner=job.owner,
        twin=job.twin,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt,
        num_images=job.num_images,
        seed=job.seed,
        steps=job.steps,
        guidance=job.guidance,
        identity_strength=job.identity_strength,
        face_structure=job.face_structure,
        best_of=job.best_of,
        preset=job.preset,
    )


def delete_generation(*, job: GenerationJob) -> None:
    """Delete a finished job, its images and its folder; the usage ledger keeps what it generated."""
    if not job.is_finished:
        raise Conflict("Cancel this generation before deleting it.", code="still_running")
    paths = [image.file.name for image in job.images.all()]
    folder = job_folder(job)  # before the delete, which clears job.pk
    job.delete()
    transaction.on_commit(lambda: sweep(default_storage, paths, [folder]))


def delete_generated_image(*, image: GeneratedImage) -> None:
    """Delete one image (the job's folder too once it was the last); the usage ledger keeps counting it."""
    path = image.file.name
    job = image.job
    last = not job.images.exclude(pk=image.pk).exists()
    image.delete()
    folders = [job_folder(job)] if last else []
    transaction.on_commit(lambda: sweep(default_storage, [path], folders))


def zip_job_images(*, job: GenerationJob) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:  # PNGs don't compress further
        for image in job.images.all():
            with image.file.open("rb") as handle:
                archive.writestr(image.filename, handle.read())
    return buffer.getvalue()
