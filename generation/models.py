from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from twins.models import Twin

MAX_IMAGES_PER_JOB = 4
# How an identity score (cosine to the twin) reads on an image's badge. One place for the pages and,
# through the API's `score_band`, their live updates.
IDENTITY_SCORE_GOOD = 0.5
IDENTITY_SCORE_FAIR = 0.3


def job_folder(job: GenerationJob) -> str:
    """Where a job's images are stored: everything under it goes when the job does."""
    return f"generations/{job.twin.storage_key}/{job.pk}"


def generated_image_upload_to(instance: GeneratedImage, filename: str) -> str:
    return f"{job_folder(instance.job)}/{filename}"


class GenerationJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    class Preset(models.TextChoices):
        # The quality/speed choice; what each means to the worker is generation/pipeline/presets.RECIPES.
        DEFAULT = "default", "Best quality (30 steps)"
        TURBO = "turbo", "Fast (8 steps)"

    ACTIVE_STATUSES = (Status.QUEUED, Status.RUNNING)
    FINISHED_STATUSES = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="generation_jobs")
    twin = models.ForeignKey(Twin, on_delete=models.CASCADE, related_name="generation_jobs")

    prompt = models.TextField(max_length=1000)
    negative_prompt = models.TextField(max_length=1000, blank=True)
    num_images = models.PositiveSmallIntegerField(default=1)
    seed = models.BigIntegerField()
    steps = models.PositiveSmallIntegerField(default=30)
    guidance = models.FloatField(default=5.0)
    identity_strength = models.FloatField(default=0.8)
    # FaceID Plus v2's face-structure weight (the recipe's s_scale, 1.0; diffusers' shortcut_scale).
    face_structure = models.FloatField(default=1.0)
    best_of = models.PositiveSmallIntegerField(default=1)
    # Which recipe ran (its steps and guidance are recorded in `steps`/`guidance`).
    preset = models.CharField(max_length=16, choices=Preset.choices, default=Preset.DEFAULT)
    width = models.PositiveIntegerField(default=1024)
    height = models.PositiveIntegerField(default=1024)

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    progress_step = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    attempts = models.PositiveSmallIntegerField(default=0)
    # The worker process running it ("host:pid"); "" until claimed, and once its dead worker was noticed.
    worker = models.CharField(max_length=200, blank=True)

    backend = models.CharField(max_length=32, blank=True)
    model_versions = models.JSONField(default=dict, blank=True)
    stage_seconds = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                name="job_num_images_range", condition=Q(num_images__gte=1, num_images__lte=MAX_IMAGES_PER_JOB)
            ),
            models.CheckConstraint(name="job_steps_range", condition=Q(steps__gte=1, steps__lte=150)),
            models.CheckConstraint(name="job_guidance_range", condition=Q(guidance__gte=0, guidance__lte=30)),
            models.CheckConstraint(
                name="job_identity_strength_range", condition=Q(identity_strength__gte=0, identity_strength__lte=2)
            ),
            models.CheckConstraint(
                name="job_face_structure_range", condition=Q(face_structure__gte=0, face_structure__lte=2)
            ),
            models.CheckConstraint(name="job_best_of_range", condition=Q(best_of__gte=1, best_of__lte=4)),
            models.CheckConstraint(name="job_prompt_not_blank", condition=~Q(prompt="")),
            models.CheckConstraint(name="job_preset_known", condition=Q(preset__in=["default", "turbo"])),
        ]

    def __str__(self) -> str:
        return f"Job {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED_STATUSES


class GeneratedImage(models.Model):
    job = models.ForeignKey(GenerationJob, on_delete=models.CASCADE, related_name="images")
    index = models.PositiveSmallIntegerField()
    file = models.ImageField(upload_to=generated_image_upload_to)
    seed = models.BigIntegerField()
    identity_score = models.FloatField(null=True, blank=True)
    score_note = models.CharField(max_length=200, blank=True)
    width = models.PositiveIntegerField(default=0)
    height = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="image_unique_index_per_job")]

    def __str__(self) -> str:
        return f"Image {self.index} of job {self.job_id}"

    @property
    def filename(self) -> str:
        return f"avatar_{self.index + 1:03d}.png"

    @property
    def score_band(self) -> str:
        """ "ok", "mid" or "low" by IDENTITY_SCORE_GOOD/FAIR; "none" when no face could be scored."""
        if self.identity_score is None:
            return "none"
        if self.identity_score >= IDENTITY_SCORE_GOOD:
            return "ok"
        return "mid" if self.identity_score >= IDENTITY_SCORE_FAIR else "low"


class UsageRecord(models.Model):
    """The usage ledger: one row per generation that produced images, what the daily image quota counts.

    The worker writes it in the transaction that makes its job `succeeded` (generation/services/runner.py),
    so it counts what was generated: a failed or cancelled job produced nothing and writes none. Deleting
    the job, one of its images or its twin keeps the row (`job` becomes null), so deleting a picture never
    gives quota back; only deleting the account (nobody left to limit) removes it. Jobs still queued or
    running count against the quota from their own rows until then (generation/selectors.py `usage_of`).
    """

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage_records")
    job = models.OneToOneField(
        GenerationJob, on_delete=models.SET_NULL, null=True, blank=True, related_name="usage_record"
    )
    images = models.PositiveSmallIntegerField()
    # When the images were produced; a default, not auto_now_add, so the backfill can keep the job's time.
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                name="usage_images_range", condition=Q(images__gte=1, images__lte=MAX_IMAGES_PER_JOB)
            ),
        ]

    def __str__(self) -> str:
        return f"{self.images} image(s) for {self.owner_id} at {self.created_at:%Y-%m-%d %H:%M}"


class WorkerHeartbeat(models.Model):
    """One row per django-q2 worker process: what it has loaded, refreshed every few seconds.

    The web side never imports the ML stack, so it cannot look for itself; the workers say what
    they can do (generation/worker_status.py), and /system-status and /health/ready read it.
    """

    name = models.CharField(max_length=200, unique=True)  # cluster@host:pid
    cluster = models.CharField(max_length=32, db_index=True)
    host = models.CharField(max_length=200)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)
    can_enroll = models.BooleanField(default=False)
    can_generate = models.BooleanField(default=False)
    capabilities = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["cluster", "host", "pid"]

    def __str__(self) -> str:
        return f"{self.cluster} worker {self.name}"
