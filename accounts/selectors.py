"""Reads for the settings page."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Sum

from accounts.models import User


@dataclass(frozen=True)
class StoredData:
    """What "delete my data" would erase."""

    twins: int
    photos: int
    generations: int
    generated_images: int

    @property
    def empty(self) -> bool:
        return not (self.twins or self.generations)


def stored_data_of(*, user: User) -> StoredData:
    from generation.models import GeneratedImage, GenerationJob
    from twins.models import Twin

    twins = Twin.objects.filter(owner=user).aggregate(n=Count("id"), photos=Sum("photo_count"))
    return StoredData(
        twins=twins["n"],
        photos=twins["photos"] or 0,
        generations=GenerationJob.objects.filter(owner=user).count(),
        generated_images=GeneratedImage.objects.filter(job__owner=user).count(),
    )
