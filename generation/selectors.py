from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet, Sum
from django.http import Http404
from django.utils import timezone

from accounts.models import User
from generation.models import GeneratedImage, GenerationJob, UsageRecord
from twins.models import Twin
from twinsite import jobs

RESTARTING_MESSAGE = "The worker stopped; your photos will restart on another worker."


def _jobs() -> QuerySet[GenerationJob]:
    return GenerationJob.objects.select_related("twin").prefetch_related("images")


def jobs_for_owner(*, owner: User) -> QuerySet[GenerationJob]:
    """Only `owner`'s own jobs, staff included: their history, and what "generate more like this" may copy."""
    return _jobs().filter(owner=owner)


def jobs_visible_to(*, user: User) -> QuerySet[GenerationJob]:
    """Owners see their own jobs; support staff see everyone's."""
    return _jobs() if user.is_staff else jobs_for_owner(owner=user)


def get_job(*, user: User, job_id: int, for_change: bool = False) -> GenerationJob:
    """The job if `user` may see it (owner or staff), else 404.

    The rule of twins.selectors.get_twin: staff may read anyone's job but change (cancel, delete,
    delete an image) only their own here, else 403; support changes go through the admin, which logs them.
    """
    job = jobs_visible_to(user=user).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    if for_change and job.owner_id != user.pk:
        raise PermissionDenied("Staff can read other people's generations here but not change them; use the admin.")
    return job


def get_own_job(*, owner: User, job_id: int) -> GenerationJob:
    """One of `owner`'s own jobs, else 404 (for staff too)."""
    job = jobs_for_owner(owner=owner).filter(pk=job_id).first()
    if job is None:
        raise Http404("No such job.")
    return job


def recent_jobs_of(*, twin: Twin, limit: int = 6) -> list[GenerationJob]:
    """The twin's latest jobs with their images, for its page (the twin is already access-checked)."""
    return list(GenerationJob.objects.filter(twin=twin).prefetch_related("images")[:limit])


def queue_position(*, job: GenerationJob) -> int | None:
    """1 = next to run. None once the job left the queue."""
    if job.status != GenerationJob.Status.QUEUED:
        return None
    ahead = GenerationJob.objects.filter(status=GenerationJob.Status.QUEUED, created_at__lt=job.created_at).count()
    return ahead + 1


def image_by_number(*, job: GenerationJob, number: int) -> GeneratedImage | None:
    """Images are numbered from 1 in URLs and file names (avatar_001.png), from 0 in the database."""
    if number < 1:
        return None
    return job.images.filter(index=number - 1).first()


@dataclass(frozen=True)
class Usage:
    """What a person used against the per-user limits of submit_generation (GENERATION_MAX_*)."""

    images_last_day: int
    images_per_day: int
    active_jobs: int
    max_concurrent_jobs: int

    @property
    def images_left(self) -> int:
        return max(0, self.images_per_day - self.images_last_day)

    @property
    def images_percent(self) -> int:
        return min(100, round(100 * self.images_last_day / self.images_per_day)) if self.images_per_day else 100


def usage_of(*, user: User) -> Usage:
    """What submit_generation checks its limits against, and what the settings page shows.

    Images of the last 24 hours are the usage ledger's (UsageRecord: written when a job produced its
    images, kept when the job, an image or the twin is deleted) plus the images of jobs queued or
    running now, which have no record yet. Failed and cancelled jobs produced nothing: they don't count.
    """
    since = timezone.now() - timedelta(days=1)
    active_jobs = GenerationJob.objects.filter(owner=user, status__in=GenerationJob.ACTIVE_STATUSES)
    # Active jobs first: one that succeeds between the two reads is counted twice for a moment, never missed.
    active = active_jobs.aggregate(jobs=Count("pk"), images=Sum("num_images"))
    produced = UsageRecord.objects.filter(owner=user, created_at__gte=since).aggregate(n=Sum("images"))["n"] or 0
    return Usage(
        images_last_day=produced + (active["images"] or 0),
        images_per_day=settings.GENERATION_MAX_IMAGES_PER_DAY,
        active_jobs=active["jobs"],
        max_concurrent_jobs=settings.GENERATION_MAX_CONCURRENT_JOBS,
    )


def restart_notice(*, job: GenerationJob) -> str:
    """What a running job whose worker died says while it waits for another one, else ""."""
    from generation.services import GENERATION

    return RESTARTING_MESSAGE if jobs.waiting_to_restart(GENERATION, job) else ""
