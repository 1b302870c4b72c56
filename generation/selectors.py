from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import User
from generation.models import GeneratedImage, GenerationJob


def jobs_visible_to(*, user: User) -> QuerySet[GenerationJob]:
    """Owners see their own jobs; support staff see everyone's."""
    jobs = GenerationJob.objects.select_related("twin").prefetch_related("images")
    return jobs if user.is_staff else jobs.filter(owner=user)


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
