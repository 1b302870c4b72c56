from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from twins.models import Twin

MAX_IMAGES_PER_JOB = 4
# How an identity score (cosine to the twin) reads on an image's badge. One place for the pages and,
# through the API's `score_band`, their live updates.
IDENTITY_SCORE_GOOD = 0.5
IDENTITY_SCORE_FAIR = 0.3


def generated_image_upload_to(instance: GeneratedImage, filename: str) -> str:
    return f"generations/{instance.job.twin.storage_key}/{instance.job_id}/{filename}"


class GenerationJob(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

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
    best_of = models.PositiveSmallIntegerField(default=1)
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
            models.CheckConstraint(name="job_best_of_range", condition=Q(best_of__gte=1, best_of__lte=4)),
            models.CheckConstraint(name="job_prompt_not_blank", condition=~Q(prompt="")),
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
