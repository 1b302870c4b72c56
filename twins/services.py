"""Twin use cases: create, upload selfies, enroll, erase. All writes and rules of the twins app live here.

Thresholds come from settings (SELFIE_*, TWIN_*); twins/faces.py measures photos and this
module decides what the measurements mean. Importing this module loads no ML library:
faces.py imports InsightFace/OpenCV inside the functions the worker calls.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, default_storage
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.db.models.fields.files import FieldFile
from django.utils import timezone
from PIL import Image

from accounts.models import User
from twins import faces, intake
from twins.intake import SelfieRefused, Upload
from twins.models import EnrollmentFailure, Selfie, SelfieRejection, Twin
from twinsite.errors import Conflict, NotFound, ServiceUnavailable, TwinsiteError, ValidationFailed
from twinsite.queue import enqueue_on_commit

logger = logging.getLogger(__name__)

ENROLL_TASK = "twins.tasks.enroll_twin_task"
STARTABLE_STATUSES = (Twin.Status.DRAFT, Twin.Status.FAILED, Twin.Status.READY)
REFERENCE_FACE_SIZE = 256
NAME_MAX_LENGTH = Twin._meta.get_field("name").max_length

ProgressCallback = Callable[[int, int], None]

MODELS_UNAVAILABLE_MESSAGE = (
    "Photos can't be checked right now: the face models are not installed on the worker. "
    "The site's staff can see this too. Your photos are kept; enroll again once it is fixed."
)


# --- Twins ------------------------------------------------------------------------------------


def _clean_twin_name(name: str) -> str:
    cleaned = " ".join((name or "").split())
    if not cleaned:
        raise ValidationFailed("Give the twin a name.", fields={"name": ["This field may not be blank."]})
    if len(cleaned) > NAME_MAX_LENGTH:
        raise ValidationFailed(
            f"The name is too long ({len(cleaned)} characters, at most {NAME_MAX_LENGTH}).",
            fields={"name": [f"Ensure this field has no more than {NAME_MAX_LENGTH} characters."]},
        )
    return cleaned


def create_twin(*, owner: User, name: str) -> Twin:
    return Twin.objects.create(owner=owner, name=_clean_twin_name(name))


def rename_twin(*, twin: Twin, name: str) -> Twin:
    twin.name = _clean_twin_name(name)
    twin.save(update_fields=["name", "updated_at"])
    return twin


# --- Upload -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UploadOutcome:
    name: str
    selfie: Selfie | None = None
    refusal: SelfieRefused | None = None

    @property
    def accepted(self) -> bool:
        return self.selfie is not None


@dataclass(frozen=True)
class UploadResult:
    twin: Twin
    outcomes: list[UploadOutcome]

    @property
    def accepted(self) -> list[UploadOutcome]:
        return [o for o in self.outcomes if o.accepted]

    @property
    def refused(self) -> list[UploadOutcome]:
        return [o for o in self.outcomes if not o.accepted]


class SelfiesRefused(TwinsiteError):
    """Every file of an upload was refused. Carries the per-file reasons for the client."""

    def __init__(self, outcomes: list[UploadOutcome]):
        refusals = [o.refusal for o in outcomes if o.refusal is not None]
        codes = {r.code for r in refusals}
        statuses = {r.status_code for r in refusals}
        # One shared reason gives its own status (415 for a wrong type, 413 for size); a mix is a plain 400.
        code = codes.pop() if len(codes) == 1 else "selfies_refused"
        message = refusals[0].message if len(outcomes) == 1 else f"None of the {len(outcomes)} photos was accepted."
        super().__init__(message, code=code, fields={"files": [f"{o.name}: {o.refusal.message}" for o in outcomes]})
        self.status_code = statuses.pop() if len(statuses) == 1 else 400
        self.outcomes = outcomes

    def as_dict(self) -> dict[str, Any]:
        body = super().as_dict()
        body["results"] = [
            {"name": o.name, "status": "refused", "code": o.refusal.code, "message": o.refusal.message}
            for o in self.outcomes
        ]
        return body


class StorageUnavailable(ServiceUnavailable):
    code = "storage_unavailable"


STORAGE_FAILED = (
    "Your photos could not be stored: the server's storage is full or not writable. "
    "Nothing from this upload was kept; try again later."
)


def _store_file(file: FieldFile, content: bytes, *, hint: str, written: list[str]) -> None:
    """Write `content` to storage as `file`, under a name chosen (and listed in `written`) before writing.

    A write that fails halfway (a full disk) leaves part of a file behind; knowing its name up
    front is what lets the caller's cleanup delete it. FieldFile.save picks the name inside.
    """
    name = file.field.generate_filename(file.instance, hint)
    written.append(name)
    file.name = file.storage.save(name, ContentFile(content), max_length=file.field.max_length)
    written[-1] = file.name


def _refuse_if_enrolling(twin: Twin) -> None:
    if twin.status == Twin.Status.ENROLLING:
        raise Conflict(
            "This twin is being enrolled right now; wait until it finishes, then add or remove photos.",
            code="enrolling",
        )


def add_selfies(*, twin: Twin, uploads: Sequence[Upload]) -> UploadResult:
    """Check and store uploaded selfies. Per-file outcomes; raises SelfiesRefused if none is accepted.

    Decoding runs before the transaction (it can take a moment per file); the count limit and
    duplicate check run inside it with the twin row locked, so two parallel uploads can't both
    squeeze past TWIN_MAX_PHOTOS. Files written to storage are deleted again if the transaction
    fails, so a database error never leaves orphan files.
    """
    if not uploads:
        raise ValidationFailed(
            "Attach one or more photos as `files` (or a single `file`).", code="no_files",
            fields={"files": ["No file was submitted."]},
        )
    _refuse_if_enrolling(twin)

    checked: list[tuple[str, intake.PreparedSelfie | None, SelfieRefused | None]] = []
    for upload in uploads:
        name = intake.clean_name(upload.name)
        try:
            checked.append((name, intake.prepare_selfie(upload=upload), None))
        except SelfieRefused as refusal:
            checked.append((name, None, refusal))

    written: list[str] = []
    storage = Selfie._meta.get_field("image").storage
    try:
        with transaction.atomic():
            locked = Twin.objects.select_for_update().get(pk=twin.pk)
            _refuse_if_enrolling(locked)
            seen = set(Selfie.objects.filter(twin=locked).values_list("sha256", flat=True))
            count = len(seen)
            outcomes: list[UploadOutcome] = []
            for name, prepared, refusal in checked:
                if prepared is None:
                    outcomes.append(UploadOutcome(name=name, refusal=refusal))
                elif prepared.sha256 in seen:
                    outcomes.append(UploadOutcome(name=name, refusal=SelfieRefused(
                        "This exact photo is already part of this twin.", code="duplicate")))
                elif count >= settings.TWIN_MAX_PHOTOS:
                    outcomes.append(UploadOutcome(name=name, refusal=SelfieRefused(
                        f"A twin holds at most {settings.TWIN_MAX_PHOTOS} photos; remove some before adding more.",
                        code="too_many_photos")))
                else:
                    selfie = Selfie(twin=locked, original_name=prepared.original_name, sha256=prepared.sha256)
                    _store_file(selfie.image, prepared.content, hint="selfie.jpg", written=written)
                    selfie.width, selfie.height = prepared.width, prepared.height
                    try:
                        with transaction.atomic():  # a savepoint: the rest of the upload survives
                            selfie.save()
                    except IntegrityError:
                        # The same file arriving in a parallel request (where the row lock is a no-op, SQLite).
                        _delete_files(storage, [written.pop()])
                        outcomes.append(UploadOutcome(name=name, refusal=SelfieRefused(
                            "This exact photo is already part of this twin.", code="duplicate")))
                        continue
                    seen.add(prepared.sha256)
                    count += 1
                    outcomes.append(UploadOutcome(name=name, selfie=selfie))
            if not any(o.accepted for o in outcomes):
                raise SelfiesRefused(outcomes)
            Twin.objects.filter(pk=locked.pk).update(photo_count=count, updated_at=timezone.now())
    except OSError as exc:  # storage full or unwritable: all or nothing, with a clear answer
        _delete_files(storage, written)
        logger.error("selfie storage failed", extra={"twin": twin.pk, "error": str(exc)[:200]})
        raise StorageUnavailable(STORAGE_FAILED) from exc
    except BaseException:
        _delete_files(storage, written)
        raise
    twin.refresh_from_db()
    logger.info("selfies uploaded", extra={"twin": twin.pk, "accepted": len(written), "files": len(uploads)})
    return UploadResult(twin=twin, outcomes=outcomes)


def delete_selfie(*, selfie: Selfie) -> None:
    """Remove one photo (row now, file after commit). The twin keeps its identity until re-enrolled."""
    twin = selfie.twin
    with transaction.atomic():
        locked = Twin.objects.select_for_update().get(pk=twin.pk)
        _refuse_if_enrolling(locked)
        name = selfie.image.name
        selfie.delete()
        remaining = Selfie.objects.filter(twin=locked)
        Twin.objects.filter(pk=locked.pk).update(
            photo_count=remaining.count(),
            accepted_count=remaining.filter(status=Selfie.Status.ACCEPTED).count(),
            rejected_count=remaining.filter(status=Selfie.Status.REJECTED).count(),
            updated_at=timezone.now(),
        )
        storage = Selfie._meta.get_field("image").storage
        transaction.on_commit(lambda: _delete_files(storage, [name]))


# --- Enrollment: starting ---------------------------------------------------------------------


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


def enrollment_next_step(twin: Twin, *, stalled: bool, pending: int) -> str:
    """The twin page's "Next:" line: what the owner should do now, matching what actually happened.

    One place for the page and its live updates (the API's `next_step`), so the two never differ.
    """
    needed = settings.TWIN_MIN_PHOTOS
    if twin.status == Twin.Status.ENROLLING:
        if stalled:
            return "This enrollment stopped making progress. Press Enroll again to restart it."
        return "Checking every photo. You can leave this page; it keeps going."
    if twin.status == Twin.Status.FAILED:
        if twin.failure == EnrollmentFailure.MODELS_UNAVAILABLE:
            return "Nothing is wrong with your photos: press Enroll again once the site's face models are installed."
        if twin.failure in (EnrollmentFailure.INTERRUPTED, EnrollmentFailure.STORAGE, EnrollmentFailure.INTERNAL):
            return "Nothing is wrong with your photos: press Enroll again in a while."
        missing = max(needed - twin.accepted_count, 1)
        if twin.rejected_count:
            return (f"Remove the refused photos or add new ones, then enroll again: at least {missing} more "
                    f"must pass the checks.")
        return f"Add at least {_photos(missing)} more, then enroll again."
    if twin.status == Twin.Status.READY:
        if pending:
            return f"{_photos(pending, 'new photo')} not part of your twin yet: enroll again to include them."
        return "Your twin is ready: generate photos below. Add photos and enroll again any time to improve it."
    missing = max(needed - twin.photo_count, 0)
    if missing:
        return f"Upload at least {_photos(missing, 'more photo')} of your face, then press Enroll."
    return "Enough photos: press Enroll to check them."


def _photos(count: int, noun: str = "photo") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def reap_stale_enrollments() -> int:
    """Queue again the enrollments left `enrolling` by a worker that is gone while the broker won't
    hand the task on (it timed out, or the queue lost it). `enroll_twin` counts each start and fails
    the twin with a message after TWIN_MAX_ENROLLMENT_ATTEMPTS. Runs every minute on a django-q2
    schedule (twins/migrations/0002). While a queue is long, a twin may get a copy a minute: the
    first to run claims it, the others find it claimed (fresh heartbeat) or finished and do nothing.
    """
    stale_before = timezone.now() - timedelta(seconds=settings.TWIN_ENROLLMENT_STALE_AFTER_S)
    stale_ids = list(Twin.objects.filter(status=Twin.Status.ENROLLING, updated_at__lt=stale_before)
                     .values_list("pk", flat=True))
    for twin_id in stale_ids:
        enqueue_on_commit(ENROLL_TASK, twin_id, cluster="gpu", name=f"enroll-twin-{twin_id}-reaped")
    if stale_ids:
        logger.warning("stale enrollments queued again", extra={"twins": stale_ids})
    return len(stale_ids)


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


# --- Enrollment: per-photo verdicts -----------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    reason: str = ""  # a SelfieRejection value; "" while the photo is still accepted
    message: str = ""

    @property
    def accepted(self) -> bool:
        return not self.reason


ACCEPTED = Verdict()


def judge_photo(analysis: faces.PhotoAnalysis) -> Verdict:
    """The single-photo checks, in the order a user should fix them."""
    face = analysis.face
    if face is None:
        return Verdict(SelfieRejection.NO_FACE, "No face was found. Use a photo where your face is clearly visible.")
    rivals = [f for f in analysis.faces[1:] if f.area >= settings.SELFIE_MULTI_FACE_RATIO * face.area]
    if rivals:
        return Verdict(
            SelfieRejection.MULTIPLE_FACES,
            f"{len(rivals) + 1} faces of similar size were found. Use photos with only you in them.",
        )
    if face.size < settings.SELFIE_MIN_FACE_PX:
        return Verdict(
            SelfieRejection.FACE_TOO_SMALL,
            f"Your face is only {face.size:.0f} pixels across; at least {settings.SELFIE_MIN_FACE_PX} are needed. "
            "Move closer to the camera or use the full-size photo.",
        )
    if analysis.sharpness is not None and analysis.sharpness < settings.SELFIE_BLUR_THRESHOLD:
        return Verdict(
            SelfieRejection.BLURRY,
            f"The face is blurry (sharpness {analysis.sharpness:.0f}, at least {settings.SELFIE_BLUR_THRESHOLD:.0f} "
            "needed). Hold the camera still and let it focus on your face.",
        )
    if analysis.brightness is not None and analysis.brightness < settings.SELFIE_DARK_THRESHOLD:
        return Verdict(
            SelfieRejection.TOO_DARK, "The face is too dark. Take the photo facing a window or a lamp."
        )
    if analysis.brightness is not None and analysis.brightness > settings.SELFIE_BRIGHT_THRESHOLD:
        return Verdict(
            SelfieRejection.TOO_BRIGHT, "The face is overexposed. Avoid direct flash and harsh sunlight."
        )
    yaw, pitch = abs(analysis.yaw or 0.0), abs(analysis.pitch or 0.0)
    if yaw > settings.SELFIE_MAX_YAW or pitch > settings.SELFIE_MAX_PITCH:
        return Verdict(
            SelfieRejection.EXTREME_POSE,
            f"The head is turned too far (about {yaw:.0f}° sideways, {pitch:.0f}° up or down). Keep within "
            f"{settings.SELFIE_MAX_YAW:.0f}° sideways and {settings.SELFIE_MAX_PITCH:.0f}° up or down.",
        )
    return ACCEPTED


def robust_centre(embeddings: np.ndarray, *, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """The identity most photos agree on, and every photo's cosine to it.

    Starts from the medoid (the photo with the highest median similarity to the others, so
    a minority of other people's photos cannot pull it), then averages the photos close to
    it. A plain mean would sit between two people and accept both.
    """
    count = embeddings.shape[0]
    if count == 1:
        return embeddings[0], np.ones(1, dtype=np.float32)
    similarity = embeddings @ embeddings.T
    np.fill_diagonal(similarity, np.nan)
    medoid = embeddings[int(np.nanargmax(np.nanmedian(similarity, axis=1)))]
    close = embeddings[(embeddings @ medoid) >= threshold]
    centre = faces.normalize(close.mean(axis=0)) if len(close) else medoid
    return centre, embeddings @ centre


def identity_embedding(embeddings: np.ndarray, similarities: np.ndarray) -> tuple[np.ndarray, int]:
    """Normalised mean of the accepted embeddings after dropping outliers; returns (vector, photos used).

    Outliers: photos much further from the centre than is usual for this set (median minus
    3 robust standard deviations). They stay accepted; they just don't shape the identity.
    """
    median = float(np.median(similarities))
    spread = 1.4826 * float(np.median(np.abs(similarities - median)))
    keep = similarities >= median - 3 * spread if spread > 0 else np.ones_like(similarities, dtype=bool)
    return faces.normalize(embeddings[keep].mean(axis=0)), int(keep.sum())


# --- Enrollment: the run ----------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollmentResult:
    twin_id: int
    status: str
    accepted: int = 0
    rejected: int = 0
    message: str = ""
    ran: bool = True  # False when there was nothing to do (not enrolling, or another worker has it)


@dataclass
class _Photo:
    selfie: Selfie
    analysis: faces.PhotoAnalysis | None = None
    verdict: Verdict = ACCEPTED
    similarity: float | None = None

    @property
    def embedding(self) -> np.ndarray | None:
        return self.analysis.embedding if self.analysis is not None else None


@dataclass
class _Outcome:
    photos: list[_Photo]
    accepted: list[_Photo] = field(default_factory=list)
    embedding: np.ndarray | None = None
    embedding_photos: int = 0


def _claim(twin: Twin) -> int | None:
    """Count this start of the enrollment; the attempt number, or None when it isn't ours to run.

    The conditional update on the attempt counter lets exactly one worker win if the task is
    delivered twice; a re-delivery after a worker died wins too, and is counted. A started run
    whose heartbeat (`updated_at`, written after every photo) is fresh belongs to a live worker:
    a duplicate delivery (the stale-enrollment reaper's, say) leaves it alone.
    """
    row = Twin.objects.filter(pk=twin.pk).values("status", "enrollment_attempts", "updated_at").first()
    if row is None or row["status"] != Twin.Status.ENROLLING:
        return None
    alive_since = timezone.now() - timedelta(seconds=settings.TWIN_ENROLLMENT_STALE_AFTER_S)
    if row["enrollment_attempts"] > 0 and row["updated_at"] > alive_since:
        return None
    attempt = row["enrollment_attempts"] + 1
    won = Twin.objects.filter(
        pk=twin.pk, status=Twin.Status.ENROLLING, enrollment_attempts=row["enrollment_attempts"]
    ).update(
        enrollment_attempts=attempt, progress_done=0, status_message="Checking your photos…", updated_at=timezone.now()
    )
    return attempt if won else None


def _fail(twin_id: int, message: str, *, failure: EnrollmentFailure) -> int:
    return Twin.objects.filter(pk=twin_id, status=Twin.Status.ENROLLING).update(
        status=Twin.Status.FAILED, status_message=message, failure=failure, updated_at=timezone.now()
    )


def _open_rgb(selfie: Selfie) -> Image.Image:
    with selfie.image.open("rb") as fh:
        image = Image.open(fh)
        image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def _analyze(photo: _Photo) -> None:
    try:
        image = _open_rgb(photo.selfie)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        logger.warning("stored selfie unreadable", extra={"selfie": photo.selfie.pk, "error": str(exc)[:200]})
        photo.verdict = Verdict(SelfieRejection.UNREADABLE, "The stored photo could not be read; upload it again.")
        return
    photo.analysis = faces.analyze_photo(image)
    photo.verdict = judge_photo(photo.analysis)


def _judge_set(photos: list[_Photo]) -> _Outcome:
    """Duplicates and other people: verdicts that need the whole set."""
    outcome = _Outcome(photos=photos)
    kept: list[_Photo] = []
    for photo in photos:
        if not photo.verdict.accepted or photo.embedding is None:
            continue
        twin_of = max(kept, key=lambda k: float(photo.embedding @ k.embedding), default=None)
        if twin_of is not None and float(photo.embedding @ twin_of.embedding) >= settings.SELFIE_DUPLICATE_COSINE:
            photo.verdict = Verdict(
                SelfieRejection.DUPLICATE,
                f"This is practically the same photo as “{twin_of.selfie.original_name or 'another photo'}”. "
                "Use different shots: other angles, expressions and light.",
            )
            continue
        kept.append(photo)
    if not kept:
        return outcome
    threshold = settings.SELFIE_SAME_PERSON_COSINE
    centre, similarities = robust_centre(np.stack([p.embedding for p in kept]), threshold=threshold)
    for photo in photos:  # every photo with a face gets its similarity, refused or not: support reads it
        if photo.embedding is not None:
            photo.similarity = float(photo.embedding @ centre)
    for photo, similarity in zip(kept, similarities, strict=True):
        if similarity < threshold:
            photo.verdict = Verdict(
                SelfieRejection.DIFFERENT_PERSON,
                f"This looks like a different person from the rest of your photos (similarity {similarity:.2f}, "
                f"at least {threshold:.2f} needed). Only upload photos of one person.",
            )
        else:
            outcome.accepted.append(photo)
    if outcome.accepted:
        outcome.embedding, outcome.embedding_photos = identity_embedding(
            np.stack([p.embedding for p in outcome.accepted]),
            np.array([p.similarity for p in outcome.accepted], dtype=np.float32),
        )
    return outcome


def _reference_score(photo: _Photo) -> float:
    # Frontal first (the generation model copies the pose of its reference), then sharp,
    # then typical of the identity, then big.
    analysis = photo.analysis
    assert analysis is not None and analysis.face is not None
    frontal = 1.0 - min(1.0, (abs(analysis.yaw or 0) + abs(analysis.pitch or 0)) / 60.0)
    sharp = min(1.0, (analysis.sharpness or 0) / (4 * max(settings.SELFIE_BLUR_THRESHOLD, 1.0)))
    size = min(1.0, analysis.face.size / REFERENCE_FACE_SIZE)
    return 0.45 * frontal + 0.25 * sharp + 0.2 * (photo.similarity or 0) + 0.1 * size


def _reference_face_png(photo: _Photo) -> bytes:
    assert photo.analysis is not None and photo.analysis.face is not None
    crop = faces.reference_crop(_open_rgb(photo.selfie), photo.analysis.face, size=REFERENCE_FACE_SIZE)
    out = io.BytesIO()
    crop.save(out, format="PNG")
    return out.getvalue()


def _summary(outcome: _Outcome, *, attempt: int, seconds: float, info: faces.FaceModelInfo) -> dict[str, Any]:
    reasons = Counter(p.verdict.reason for p in outcome.photos if not p.verdict.accepted)
    similarities = [p.similarity for p in outcome.accepted if p.similarity is not None]
    return {
        "photos": len(outcome.photos),
        "accepted": len(outcome.accepted),
        "rejected": len(outcome.photos) - len(outcome.accepted),
        "reasons": dict(reasons.most_common()),
        "embedding_photos": outcome.embedding_photos,
        "similarity_min": round(min(similarities), 4) if similarities else None,
        "similarity_median": round(float(np.median(similarities)), 4) if similarities else None,
        "model": info.pack,
        "dim": info.dim,
        "attempt": attempt,
        "seconds": round(seconds, 2),
    }


def _status_message(outcome: _Outcome) -> tuple[str, str]:
    total, accepted, needed = len(outcome.photos), len(outcome.accepted), settings.TWIN_MIN_PHOTOS
    reasons = Counter(p.verdict.reason for p in outcome.photos if not p.verdict.accepted)
    refused = ", ".join(
        f"{count} {SelfieRejection(reason).label.lower()}" for reason, count in reasons.most_common()
    )
    if accepted >= needed:
        message = f"Ready: {accepted} of {total} photos accepted."
        if refused:
            message += f" Refused: {refused}."
        return Twin.Status.READY, message
    message = f"Only {accepted} of {total} photos passed the checks; at least {needed} are needed."
    if refused:
        message += f" Refused: {refused}."
    message += (
        f" Add at least {needed - accepted} more clear, well-lit photos of the same face "
        "(only you in the picture, different angles, no sunglasses), then enroll again."
    )
    return Twin.Status.FAILED, message


def enroll_twin(*, twin: Twin, on_progress: ProgressCallback | None = None) -> EnrollmentResult:
    """Analyse every photo of an `enrolling` twin and make it `ready` or `failed`.

    Idempotent: re-analyses all photos each run, writes every result in one transaction at
    the end, and does nothing when the twin is not enrolling (a late duplicate delivery).
    """
    attempt = _claim(twin)
    if attempt is None:
        current = Twin.objects.filter(pk=twin.pk).values_list("status", flat=True).first()
        return EnrollmentResult(twin_id=twin.pk, status=current or "deleted", ran=False)
    if attempt > settings.TWIN_MAX_ENROLLMENT_ATTEMPTS:
        message = (
            f"Enrollment was interrupted {attempt - 1} times (the worker stopped before finishing). "
            "Try again later; if it keeps happening, contact support."
        )
        _fail(twin.pk, message, failure=EnrollmentFailure.INTERRUPTED)
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
        message = ("Enrollment could not save its results: the server's storage is full or not writable. "
                   "Your photos are unchanged; enroll again later.")
    except Exception:
        logger.exception("enrollment crashed", extra={"twin": twin.pk})
        failure = EnrollmentFailure.INTERNAL
        message = "Enrollment stopped because of an internal error. Try again; if it keeps failing, contact support."
    _fail(twin.pk, message, failure=failure)
    return EnrollmentResult(twin_id=twin.pk, status=Twin.Status.FAILED, message=message)


def _run(twin: Twin, *, attempt: int, on_progress: ProgressCallback | None) -> EnrollmentResult:
    started = time.monotonic()
    info = faces.model_info()  # load (or fail) before touching any photo
    photos = [_Photo(selfie=s) for s in Selfie.objects.filter(twin_id=twin.pk).order_by("created_at", "id")]
    total = len(photos)
    Twin.objects.filter(pk=twin.pk).update(progress_total=total, photo_count=total)
    for done, photo in enumerate(photos, start=1):
        _analyze(photo)
        still_there = Twin.objects.filter(pk=twin.pk, status=Twin.Status.ENROLLING).update(
            progress_done=done, status_message=f"Checked {done} of {total} photos…", updated_at=timezone.now()
        )  # updated_at doubles as the heartbeat that tells a running enrollment from a lost one
        if not still_there:  # erased (or reset by support) mid-run: stop quietly
            return EnrollmentResult(twin_id=twin.pk, status="cancelled", ran=False)
        if on_progress:
            on_progress(done, total)

    outcome = _judge_set(photos)
    status, message = _status_message(outcome)
    reference_png = None
    if status == Twin.Status.READY:
        reference_png = _reference_face_png(max(outcome.accepted, key=_reference_score))
    summary = _summary(outcome, attempt=attempt, seconds=time.monotonic() - started, info=info)
    return _save(twin, outcome, status=status, message=message, info=info, summary=summary, reference_png=reference_png)


def _save(
    twin: Twin,
    outcome: _Outcome,
    *,
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
            locked = Twin.objects.select_for_update().filter(pk=twin.pk, status=Twin.Status.ENROLLING).first()
            if locked is None:
                return EnrollmentResult(twin_id=twin.pk, status="cancelled", ran=False)
            for photo in outcome.photos:
                _apply(photo, now=now)
            Selfie.objects.bulk_update(
                [p.selfie for p in outcome.photos],
                ["status", "reason", "message", "face_box", "face_count", "detector_score", "sharpness",
                 "brightness", "yaw", "pitch", "similarity", "embedding", "analyzed_at"],
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
                _store_file(locked.reference_face, reference_png, hint="reference.png", written=new_files)
            else:
                # A failed twin has no usable identity; don't keep one around that nothing may use.
                locked.embedding = None
                locked.embedding_model = ""
                locked.embedding_dim = None
                locked.reference_face = ""
            locked.save()
            if old_reference and old_reference not in new_files:
                transaction.on_commit(lambda: _delete_files(storage, [old_reference]))
    except BaseException:
        _delete_files(storage, new_files)
        raise
    logger.info("enrollment finished", extra={"twin": twin.pk, "status": status, "accepted": accepted})
    return EnrollmentResult(
        twin_id=twin.pk, status=status, accepted=accepted, rejected=len(outcome.photos) - accepted, message=message
    )


def _apply(photo: _Photo, *, now: Any) -> None:
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


# --- Retention --------------------------------------------------------------------------------


def purge_expired_selfies(*, now: datetime | None = None) -> int:
    """Delete the raw selfies of twins enrolled more than SELFIE_RETENTION_DAYS ago (0 = keep them).

    Only the photos that went into that enrollment go (those uploaded before it), rows with their
    per-photo embeddings and files alike. The twin keeps its identity embedding and reference face,
    so it stays ready and keeps generating; enrolling again needs new photos. Runs daily on a
    django-q2 schedule (twins/migrations/0002). Returns the number of photos deleted.
    """
    days = settings.SELFIE_RETENTION_DAYS
    if days <= 0:
        return 0
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    due = (
        Twin.objects.filter(status=Twin.Status.READY, enrolled_at__lte=cutoff,
                            selfies__created_at__lte=F("enrolled_at"))
        .values_list("pk", flat=True)
        .distinct()
    )
    storage = Selfie._meta.get_field("image").storage
    deleted = 0
    for twin_id in list(due):
        with transaction.atomic():
            twin = Twin.objects.select_for_update().filter(
                pk=twin_id, status=Twin.Status.READY, enrolled_at__lte=cutoff
            ).first()
            if twin is None:  # re-enrolling or erased since the query
                continue
            expired = Selfie.objects.filter(twin=twin, created_at__lte=twin.enrolled_at)
            names = [name for name in expired.values_list("image", flat=True) if name]
            count = expired.count()
            expired.delete()
            note = f"The original photos were deleted {days} days after enrollment (retention setting)."
            Twin.objects.filter(pk=twin.pk).update(
                photo_count=Selfie.objects.filter(twin=twin).count(),
                status_message=f"{twin.status_message} {note}".strip()[:2000],
                quality_summary={**twin.quality_summary, "selfies_deleted": count,
                                 "selfies_deleted_at": now.isoformat()},
                updated_at=timezone.now(),
            )
            transaction.on_commit(lambda names=names: _delete_files(storage, names))
        deleted += count
        logger.info("expired selfies deleted", extra={"twin": twin_id, "photos": count, "retention_days": days})
    return deleted


# --- Erasure ----------------------------------------------------------------------------------


def delete_twin(*, twin: Twin) -> None:
    """Erase a twin: its rows (selfies and generation jobs cascade) now, every file after commit.

    Files are found twice over: by the names the rows hold, and by listing the twin's storage
    prefixes (works on S3 too), so a file whose row was lost is erased as well.
    """
    from generation.models import GeneratedImage

    names = [n for n in Selfie.objects.filter(twin_id=twin.pk).values_list("image", flat=True) if n]
    names += [n for n in GeneratedImage.objects.filter(job__twin_id=twin.pk).values_list("file", flat=True) if n]
    if twin.reference_face:
        names.append(twin.reference_face.name)
    prefixes = [f"twins/{twin.storage_key}", f"generations/{twin.storage_key}"]
    storage = default_storage
    with transaction.atomic():
        Twin.objects.filter(pk=twin.pk).delete()
        transaction.on_commit(lambda: _erase(storage, names, prefixes))
    logger.info("twin erased", extra={"twin": twin.pk, "files": len(names)})


def _erase(storage: Storage, names: Iterable[str], prefixes: Iterable[str]) -> None:
    _delete_files(storage, names)
    for prefix in prefixes:
        _delete_tree(storage, prefix)


def _delete_files(storage: Storage, names: Iterable[str]) -> None:
    for name in names:
        try:
            storage.delete(name)
        except Exception:  # keep erasing the rest; the prefix sweep gets another try
            logger.exception("could not delete file", extra={"file": name})


def _delete_tree(storage: Storage, prefix: str) -> None:
    try:
        directories, files = storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError):
        return
    _delete_files(storage, [f"{prefix}/{name}" for name in files])
    for directory in directories:
        _delete_tree(storage, f"{prefix}/{directory}")
    # Local disk keeps empty folders named after the twin; object stores have none.
    with contextlib.suppress(NotImplementedError, OSError):
        os.rmdir(storage.path(prefix))
