"""What the measurements mean: pure functions of the values twins/faces.py measured.

One photo's checks (judge_photo), the whole set's (duplicates, another person, the identity
centre and its outliers), which photo becomes the reference face, and the words the owner reads
(status message, next step). Nothing here touches the database, storage or a model.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from twins import faces
from twins.models import EnrollmentFailure, Selfie, SelfieRejection, Twin

logger = logging.getLogger(__name__)


# The reference face is cut at CLIP's 224 px (faces.reference_crop); a face this big in its photo needs no upscaling.
REFERENCE_FACE_SIZE = faces.CLIP_FACE_SIZE


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
        return Verdict(SelfieRejection.TOO_DARK, "The face is too dark. Take the photo facing a window or a lamp.")
    if analysis.brightness is not None and analysis.brightness > settings.SELFIE_BRIGHT_THRESHOLD:
        return Verdict(SelfieRejection.TOO_BRIGHT, "The face is overexposed. Avoid direct flash and harsh sunlight.")
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


@dataclass
class PhotoCheck:
    selfie: Selfie
    analysis: faces.PhotoAnalysis | None = None
    verdict: Verdict = ACCEPTED
    similarity: float | None = None

    @property
    def embedding(self) -> np.ndarray | None:
        return self.analysis.embedding if self.analysis is not None else None


@dataclass
class SetVerdict:
    photos: list[PhotoCheck]
    accepted: list[PhotoCheck] = field(default_factory=list)
    embedding: np.ndarray | None = None
    embedding_photos: int = 0


def judge_set(photos: list[PhotoCheck]) -> SetVerdict:
    """Duplicates and other people: verdicts that need the whole set."""
    outcome = SetVerdict(photos=photos)
    kept: list[PhotoCheck] = []
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


def reference_score(photo: PhotoCheck) -> float:
    """How well an accepted photo serves as the twin's reference face; enrollment keeps the highest.

    The rule: frontal first (45 %: FaceID Plus copies the pose and structure of its CLIP reference,
    so a turned head turns every output), then sharp (25 %: CLIP sees the 224 px crop's detail), then
    nearest the twin's identity centre (20 %: cosine to the robust centre, so the reference is the
    person's typical face, not an odd expression or lighting), then big enough (10 %: a face of at least
    224 px is cut without upscaling). Only accepted photos compete, so every candidate already passed
    the blur, light, pose and same-person checks.
    """
    analysis = photo.analysis
    assert analysis is not None and analysis.face is not None
    frontal = 1.0 - min(1.0, (abs(analysis.yaw or 0) + abs(analysis.pitch or 0)) / 60.0)
    sharp = min(1.0, (analysis.sharpness or 0) / (4 * max(settings.SELFIE_BLUR_THRESHOLD, 1.0)))
    size = min(1.0, analysis.face.size / REFERENCE_FACE_SIZE)
    return 0.45 * frontal + 0.25 * sharp + 0.2 * (photo.similarity or 0) + 0.1 * size


def quality_summary(outcome: SetVerdict, *, attempt: int, seconds: float, info: faces.FaceModelInfo) -> dict[str, Any]:
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


def enrollment_status(outcome: SetVerdict) -> tuple[str, str]:
    total, accepted, needed = len(outcome.photos), len(outcome.accepted), settings.TWIN_MIN_PHOTOS
    reasons = Counter(p.verdict.reason for p in outcome.photos if not p.verdict.accepted)
    refused = ", ".join(f"{count} {SelfieRejection(reason).label.lower()}" for reason, count in reasons.most_common())
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
            return (
                f"Remove the refused photos or add new ones, then enroll again: at least {missing} more "
                f"must pass the checks."
            )
        return f"Add at least {_plural(missing)} more, then enroll again."
    if twin.status == Twin.Status.READY:
        if pending:
            return f"{_plural(pending, 'new photo')} not part of your twin yet: enroll again to include them."
        return "Your twin is ready: generate photos below. Add photos and enroll again any time to improve it."
    missing = max(needed - twin.photo_count, 0)
    if missing:
        return f"Upload at least {_plural(missing, 'more photo')} of your face, then press Enroll."
    return "Enough photos: press Enroll to check them."


def _plural(count: int, noun: str = "photo") -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
