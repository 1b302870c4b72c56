"""Enrollment: start it, run it on the `gpu` worker, save its verdicts and the twin's identity.

The claim, heartbeat and reaper are the shared job machinery (twinsite/jobs.py); what the
measurements mean is twins/services/verdicts.py.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image

from twins import faces
from twins.models import EnrollmentFailure, Selfie, SelfieRejection, Twin
from twins.services.verdicts import (
    PhotoCheck,
    SetVerdict,
    Verdict,
    enrollment_status,
    judge_photo,
    judge_set,
    quality_summary,
    reference_score,
)
from twinsite import jobs
from twinsite.errors import Conflict, NotFound
from twinsite.queue import enqueue_on_commit
from twinsite.storage import delete_files, store_file

logger = logging.getLogger(__name__)


ENROLL_TASK = "twins.tasks.enroll_twin_task"

STARTABLE_STATUSES = (Twin.Status.DRAFT, Twin.Status.FAILED, Twin.Status.READY)

ProgressCallback = Callable[[int, int], None]

MODELS_UNAVAILABLE_MESSAGE = (
    "Photos can't be checked right now: the face models are not installed on the worker. "
    "The site's staff can see this too. Your photos are kept; enroll again once it is fixed."
)

# An enrolling twin is a job: `enrollment_attempts` counts its starts, `updated_at` (written after
# every photo, and by the worker's heartbeat thread) is its heartbeat, `enrollment_worker` names the
# process running it, TWIN_ENROLLMENT_STALE_AFTER_S of silence means that process is gone.
ENROLLMENT = jobs.JobKind(
    model=Twin,
    active={"status": Twin.Status.ENROLLING},
    started={"status": Twin.Status.ENROLLING},
    attempts_field="enrollment_attempts",
    heartbeat_field="updated_at",
    holder_field="enrollment_worker",
    stale_after_s=lambda: settings.TWIN_ENROLLMENT_STALE_AFTER_S,
    task_path=ENROLL_TASK,
    task_label="enroll-twin",
)


def enrollment_stall_seconds() -> int:
    """After this long without a heartbeat an enrollment counts as lost and may be started again.

    The gpu cluster re-delivers a task whose worker died `retry` seconds after it was taken, and
    a running enrollment writes progress after every photo; silence beyond that means the task
    itself is gone (a flushed queue, say), and the twin would otherwise stay `enrolling` forever.
    """
    return int(settings.Q_CLUSTER.get("ALT_CLUSTERS", {}).get("gpu", {}).get("retry", 1860)) + 60


def enrollment_stalled(twin: Twin) -> bool:
    return twin.status == Twin.Status.ENROLLING and (
        timezone.now() - twin.updated_at > timedelta(seconds=enrollment_stall_seconds())
    )


RESTARTING_MESSAGE = "The worker stopped; your photos will be checked again on another worker…"


def enrollment_status_message(twin: Twin) -> str:
    """The twin's status line; while its enrollment waits for a new worker (the last one died), that,
    instead of a photo count that no longer moves."""
    return RESTARTING_MESSAGE if jobs.waiting_to_restart(ENROLLMENT, twin) else twin.status_message


def reap_stale_enrollments() -> int:
    """Queue again the enrollments left `enrolling` by a worker that is gone while the broker won't
    hand the task on (it timed out, or the queue lost it). `enroll_twin` counts each start and fails
    the twin with a message after TWIN_MAX_ENROLLMENT_ATTEMPTS. Runs every minute on a django-q2
    schedule (twins/migrations/0002). While a queue is long, a twin may get a copy a minute: the
    first to run claims it, the others find it claimed (fresh heartbeat) or finished and do nothing.
    """
    return jobs.reap_stale(ENROLLMENT)


def start_enrollment(*, twin: Twin, enqueue: bool = True) -> Twin:
    """Move a draft/failed/ready twin to `enrolling` and queue the enrollment on the GPU cluster.

    `enqueue=False` is for callers that run `enroll_twin` in-process right after (the
    enroll_folder command). Raises Conflict (409) while enrolling (unless that enrollment
    has stalled, see enrollment_stall_seconds) or when there is no photo.
    """
    with transaction.atomic():
        photos = Selfie.objects.filter(twin_id=twin.pk).count()
        if photos == 0:
            raise Conflict(
                f"Upload photos before enrolling: at least {settings.TWIN_MIN_PHOTOS} are needed.", code="no_photos"
            )
        stalled_before = timezone.now() - timedelta(seconds=enrollment_stall_seconds())
        startable = Q(status__in=STARTABLE_STATUSES) | Q(status=Twin.Status.ENROLLING, updated_at__lt=stalled_before)
        claimed = Twin.objects.filter(startable, pk=twin.pk).update(
            status=Twin.Status.ENROLLING,
            progress_done=0,
            progress_total=photos,
            photo_count=photos,
            enrollment_attempts=0,
            enrollment_worker="",
            failure="",
            status_message="Waiting for a worker to check your photos…",
            updated_at=timezone.now(),
        )
        if not claimed:
            if not Twin.objects.filter(pk=twin.pk).exists():
                raise NotFound("This twin no longer exists.")
            raise Conflict("This twin is already being enrolled; wait for it to finish.", code="enrolling")
        if enqueue:
            enqueue_on_commit(ENROLL_TASK, twin.pk, cluster="gpu", name=f"enroll-twin-{twin.pk}")
    twin.refresh_from_db()
    logger.info("enrollment started", extra={"twin": twin.pk, "photos": photos})
    return twin


@dataclass(frozen=True)
class EnrollmentResult:
    twin_id: int
    status: str
    accepted: int = 0
    rejected: int = 0
    message: str = ""
    ran: bool = True  # False when there was nothing to do (not enrolling, or another worker has it)


def _fail(twin_id: int, message: str, *, failure: EnrollmentFailure, attempt: int) -> int:
    # Only while this attempt holds the twin: one restarted elsewhere is that worker's to finish.
    return jobs.still_held(ENROLLMENT, twin_id, attempt=attempt).update(
        status=Twin.Status.FAILED, status_message=message, failure=failure, updated_at=timezone.now()
    )


def _open_rgb(selfie: Selfie) -> Image.Image:
    with selfie.image.open("rb") as fh:
        image = Image.open(fh)
        image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def _analyze(photo: PhotoCheck) -> None:
    try:
        image = _open_rgb(photo.selfie)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        logger.warning("stored selfie unreadable", extra={"selfie": photo.selfie.pk, "error": str(exc)[:200]})
        photo.verdict = Verdict(SelfieRejection.UNREADABLE, "The stored photo could not be read; upload it again.")
        return
    photo.analysis = faces.analyze_photo(image)
    photo.verdict = judge_photo(photo.analysis)


def _reference_face_png(photo: PhotoCheck) -> bytes:
    assert photo.analysis is not None and photo.analysis.face is not None
    crop = faces.reference_crop(_open_rgb(photo.selfie), photo.analysis.face)
    out = io.BytesIO()
    crop.save(out, format="PNG")
    return out.getvalue()


def enroll_twin(*, twin: Twin, on_progress: ProgressCallback | None = None) -> EnrollmentResult:
    """Analyse every photo of an `enrolling` twin and make it `ready` or `failed`.

    Idempotent: re-analyses all photos each run, writes every result in one transaction at
    the end, and does nothing when the twin is not enrolling (a late duplicate delivery).
    """
    # One of two deliveries wins; a fresh heartbeat means a live worker has it (the reaper's copy, say).
    attempt = jobs.claim(ENROLLMENT, twin.pk, start={"progress_done": 0, "status_message": "Checking your photos…"})
    if attempt is None:
        current = Twin.objects.filter(pk=twin.pk).values_list("status", flat=True).first()
        return EnrollmentResult(twin_id=twin.pk, status=current or "deleted", ran=False)
    try:
        return _enroll_claimed(twin, attempt=attempt, on_progress=on_progress)
    finally:
        jobs.let_go(ENROLLMENT, twin.pk)


def _enroll_claimed(twin: Twin, *, attempt: int, on_progress: ProgressCallback | None) -> EnrollmentResult:
    if attempt > settings.TWIN_MAX_ENROLLMENT_ATTEMPTS:
        message = (
            f"Enrollment was interrupted {attempt - 1} times (the worker stopped before finishing). "
            "Try again later; if it keeps happening, contact support."
        )
        _fail(twin.pk, message, failure=EnrollmentFailure.INTERRUPTED, attempt=attempt)
        logger.error("enrollment gave up", extra={"twin": twin.pk, "attempts": attempt - 1})
        return EnrollmentResult(twin_id=twin.pk, status=Twin.Status.FAILED, message=message)
    try:
        return _run(twin, attempt=attempt, on_progress=on_progress)
    except faces.FaceModelUnavailable as exc:
        # The reason (paths, pack) is for the operator: it goes to the log and /system-status, not to the user.
        logger.error("face models unavailable", extra={"twin": twin.pk, "error": str(exc)})
        failure, message = EnrollmentFailure.MODELS_UNAVAILABLE, MODELS_UNAVAILABLE_MESSAGE
    except OSError as exc:  # the reference face could not be written: storage full or unwritable
        logger.error("enrollment could not store its results", extra={"twin": twin.pk, "error": str(exc)[:200]})
        failure = EnrollmentFailure.STORAGE
        message = (
            "Enrollment could not save its results: the server's storage is full or not writable. "
            "Your photos are unchanged; enroll again later."
        )
    except Exception:
        logger.exception("enrollment crashed", extra={"twin": twin.pk})
        failure = EnrollmentFailure.INTERNAL
        message = "Enrollment stopped because of an internal error. Try again; if it keeps failing, contact support."
    _fail(twin.pk, message, failure=failure, attempt=attempt)
    return EnrollmentResult(twin_id=twin.pk, status=Twin.Status.FAILED, message=message)


def _run(twin: Twin, *, attempt: int, on_progress: ProgressCallback | None) -> EnrollmentResult:
    started = time.monotonic()
    info = faces.model_info()  # load (or fail) before touching any photo
    photos = [PhotoCheck(selfie=s) for s in Selfie.objects.filter(twin_id=twin.pk).order_by("created_at", "id")]
    total = len(photos)
    Twin.objects.filter(pk=twin.pk).update(progress_total=total, photo_count=total)
    for done, photo in enumerate(photos, start=1):
        _analyze(photo)
        still_there = jobs.heartbeat(
            ENROLLMENT, twin.pk, progress_done=done, status_message=f"Checked {done} of {total} photos…"
        )
        if not still_there:  # erased (or reset by support) mid-run: stop quietly
            return EnrollmentResult(twin_id=twin.pk, status="cancelled", ran=False)
        if on_progress:
            on_progress(done, total)

    outcome = judge_set(photos)
    status, message = enrollment_status(outcome)
    reference_png = None
    if status == Twin.Status.READY:
        reference_png = _reference_face_png(max(outcome.accepted, key=reference_score))
    summary = quality_summary(outcome, attempt=attempt, seconds=time.monotonic() - started, info=info)
    return _save(
        twin,
        outcome,
        attempt=attempt,
        status=status,
        message=message,
        info=info,
        summary=summary,
        reference_png=reference_png,
    )


def _save(
    twin: Twin,
    outcome: SetVerdict,
    *,
    attempt: int,
    status: str,
    message: str,
    info: faces.FaceModelInfo,
    summary: dict[str, Any],
    reference_png: bytes | None,
) -> EnrollmentResult:
    now = timezone.now()
    storage = Twin._meta.get_field("reference_face").storage
    new_files: list[str] = []
    try:
        with transaction.atomic():
            # Only the attempt that holds the twin saves: one thought dead and restarted elsewhere doesn't.
            locked = jobs.still_held(ENROLLMENT, twin.pk, attempt=attempt).select_for_update().first()
            if locked is None:
                return EnrollmentResult(twin_id=twin.pk, status="cancelled", ran=False)
            for photo in outcome.photos:
                _apply(photo, now=now)
            Selfie.objects.bulk_update(
                [p.selfie for p in outcome.photos],
                [
                    "status",
                    "reason",
                    "message",
                    "face_box",
                    "face_count",
                    "detector_score",
                    "sharpness",
                    "brightness",
                    "yaw",
                    "pitch",
                    "similarity",
                    "embedding",
                    "analyzed_at",
                ],
            )
            old_reference = locked.reference_face.name
            accepted = len(outcome.accepted)
            locked.status = status
            locked.status_message = message
            locked.failure = EnrollmentFailure.TOO_FEW_PHOTOS if status == Twin.Status.FAILED else ""
            locked.photo_count = len(outcome.photos)
            locked.accepted_count = accepted
            locked.rejected_count = len(outcome.photos) - accepted
            locked.quality_summary = summary
            locked.progress_done = locked.progress_total = len(outcome.photos)
            if status == Twin.Status.READY:
                assert outcome.embedding is not None and reference_png is not None
                locked.embedding = faces.embedding_to_bytes(outcome.embedding)
                locked.embedding_model = info.pack
                locked.embedding_dim = int(outcome.embedding.size)
                locked.enrolled_at = now
                store_file(locked.reference_face, reference_png, hint="reference.png", written=new_files)
            else:
                # A failed twin has no usable identity; don't keep one around that nothing may use.
                locked.embedding = None
                locked.embedding_model = ""
                locked.embedding_dim = None
                locked.reference_face = ""
            locked.save()
            if old_reference and old_reference not in new_files:
                transaction.on_commit(lambda: delete_files(storage, [old_reference]))
    except BaseException:
        delete_files(storage, new_files)
        raise
    logger.info("enrollment finished", extra={"twin": twin.pk, "status": status, "accepted": accepted})
    return EnrollmentResult(
        twin_id=twin.pk, status=status, accepted=accepted, rejected=len(outcome.photos) - accepted, message=message
    )


def _apply(photo: PhotoCheck, *, now: Any) -> None:
    selfie, analysis = photo.selfie, photo.analysis
    selfie.status = Selfie.Status.ACCEPTED if photo.verdict.accepted else Selfie.Status.REJECTED
    selfie.reason = photo.verdict.reason
    selfie.message = photo.verdict.message[:300]
    selfie.analyzed_at = now
    selfie.similarity = None if photo.similarity is None else round(photo.similarity, 4)
    face = analysis.face if analysis is not None else None
    selfie.face_count = len(analysis.faces) if analysis is not None else None
    selfie.face_box = [round(v, 1) for v in face.box] if face is not None else None
    selfie.detector_score = round(face.score, 4) if face is not None else None
    selfie.sharpness = _rounded(analysis.sharpness if analysis else None, 2)
    selfie.brightness = _rounded(analysis.brightness if analysis else None, 2)
    selfie.yaw = _rounded(analysis.yaw if analysis else None, 1)
    selfie.pitch = _rounded(analysis.pitch if analysis else None, 1)
    embedding = photo.embedding
    selfie.embedding = faces.embedding_to_bytes(embedding) if embedding is not None else None


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)
