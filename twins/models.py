from __future__ import annotations

import uuid
from pathlib import PurePosixPath

from django.conf import settings
from django.db import models
from django.db.models import Q


def _private_path(prefix: str, filename: str) -> str:
    # Random names: the uploader's filename never reaches the storage path.
    suffix = PurePosixPath(filename).suffix.lower()
    if suffix not in {".jpg", ".jpeg", ".png", ".webp"}:
        suffix = ".png"
    return f"{prefix}/{uuid.uuid4().hex}{suffix}"


def selfie_upload_to(instance: Selfie, filename: str) -> str:
    return _private_path(f"twins/{instance.twin.storage_key}/selfies", filename)


def reference_face_upload_to(instance: Twin, filename: str) -> str:
    return _private_path(f"twins/{instance.storage_key}/reference", filename)


class EnrollmentFailure(models.TextChoices):
    """Why a twin is `failed`: the photos, or the site. Decides what the user is told to do next."""

    TOO_FEW_PHOTOS = "too_few_photos", "Too few photos passed the checks"
    MODELS_UNAVAILABLE = "models_unavailable", "Face models not installed on the worker"
    INTERRUPTED = "interrupted", "Interrupted too often"
    STORAGE = "storage", "Results could not be stored"
    INTERNAL = "internal", "Internal error"


class Twin(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ENROLLING = "enrolling", "Enrolling"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="twins")
    name = models.CharField(max_length=100)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT, db_index=True)
    storage_key = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)

    # Identity: float32, L2-normalised; the model name and size travel with it so a
    # change of face model is detectable instead of silently comparing apples to pears.
    embedding = models.BinaryField(null=True, blank=True, editable=False)
    embedding_model = models.CharField(max_length=100, blank=True)
    embedding_dim = models.PositiveIntegerField(null=True, blank=True)
    reference_face = models.ImageField(upload_to=reference_face_upload_to, blank=True)

    photo_count = models.PositiveIntegerField(default=0)
    accepted_count = models.PositiveIntegerField(default=0)
    rejected_count = models.PositiveIntegerField(default=0)
    quality_summary = models.JSONField(default=dict, blank=True)
    status_message = models.TextField(blank=True)
    failure = models.CharField(max_length=32, choices=EnrollmentFailure.choices, blank=True)

    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    enrollment_attempts = models.PositiveSmallIntegerField(default=0)
    # The worker process enrolling it ("host:pid"); "" until claimed, and once its dead worker was noticed.
    enrollment_worker = models.CharField(max_length=200, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    enrolled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                name="twin_ready_has_embedding",
                condition=~Q(status="ready") | (Q(embedding__isnull=False) & Q(embedding_dim__gt=0)),
            ),
            models.CheckConstraint(name="twin_name_not_blank", condition=~Q(name="")),
            models.CheckConstraint(name="twin_failure_only_when_failed", condition=Q(status="failed") | Q(failure="")),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_status_display()})"

    @property
    def is_ready(self) -> bool:
        return self.status == self.Status.READY


class SelfieRejection(models.TextChoices):
    NO_FACE = "no_face", "No face found"
    MULTIPLE_FACES = "multiple_faces", "More than one face"
    FACE_TOO_SMALL = "face_too_small", "Face too small"
    BLURRY = "blurry", "Blurry"
    TOO_DARK = "too_dark", "Too dark"
    TOO_BRIGHT = "too_bright", "Too bright"
    EXTREME_POSE = "extreme_pose", "Head turned too far"
    DUPLICATE = "duplicate", "Duplicate photo"
    DIFFERENT_PERSON = "different_person", "Looks like a different person"
    UNREADABLE = "unreadable", "Could not be read"


class Selfie(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"

    twin = models.ForeignKey(Twin, on_delete=models.CASCADE, related_name="selfies")
    image = models.ImageField(upload_to=selfie_upload_to, width_field="width", height_field="height")
    original_name = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    reason = models.CharField(max_length=32, choices=SelfieRejection.choices, blank=True)
    message = models.CharField(max_length=300, blank=True)

    # What the face model saw, kept so support staff can tell why a photo was refused.
    face_box = models.JSONField(null=True, blank=True)
    face_count = models.PositiveSmallIntegerField(null=True, blank=True)
    detector_score = models.FloatField(null=True, blank=True)
    sharpness = models.FloatField(null=True, blank=True)
    brightness = models.FloatField(null=True, blank=True)
    yaw = models.FloatField(null=True, blank=True)
    pitch = models.FloatField(null=True, blank=True)
    similarity = models.FloatField(null=True, blank=True, help_text="Cosine to the twin's robust centre")
    embedding = models.BinaryField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(auto_now_add=True)
    analyzed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["twin", "sha256"], name="selfie_unique_per_twin"),
            models.CheckConstraint(
                name="selfie_rejected_has_reason",
                condition=~Q(status="rejected") | ~Q(reason=""),
            ),
            models.CheckConstraint(
                name="selfie_reason_only_when_rejected",
                condition=Q(status="rejected") | Q(reason=""),
            ),
        ]

    def __str__(self) -> str:
        return f"Selfie {self.pk} of {self.twin_id} ({self.status})"
