"""Retention and erasure: raw selfies deleted after SELFIE_RETENTION_DAYS, and a twin erased
with every file it has, wherever its rows point.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from twins.models import Selfie, Twin
from twinsite.errors import Conflict
from twinsite.storage import delete_files, sweep

logger = logging.getLogger(__name__)


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
        Twin.objects.filter(
            status=Twin.Status.READY, enrolled_at__lte=cutoff, selfies__created_at__lte=F("enrolled_at")
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    storage = Selfie._meta.get_field("image").storage
    deleted = 0
    for twin_id in list(due):
        with transaction.atomic():
            twin = (
                Twin.objects.select_for_update()
                .filter(pk=twin_id, status=Twin.Status.READY, enrolled_at__lte=cutoff)
                .first()
            )
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
                quality_summary={
                    **twin.quality_summary,
                    "selfies_deleted": count,
                    "selfies_deleted_at": now.isoformat(),
                },
                updated_at=timezone.now(),
            )
            transaction.on_commit(lambda names=names: delete_files(storage, names))
        deleted += count
        logger.info("expired selfies deleted", extra={"twin": twin_id, "photos": count, "retention_days": days})
    return deleted


def delete_twin(*, twin: Twin) -> None:
    """Erase a twin: stop its generations, then its rows (selfies and generation jobs cascade) now,
    every file after commit.

    Its queued jobs are cancelled and its running ones asked to stop first, so a worker stops at its
    next step; one that is writing an image holds the job's row until the file is written, and one
    that finds its job gone writes nothing more (generation/services/runner.py), so the sweep below
    is the last word: nothing of the twin appears in storage after this returns. The usage ledger
    keeps what the twin's jobs generated (generation.models.UsageRecord).

    Files are found twice over: by the names the rows hold, and by listing the twin's storage
    prefixes (works on S3 too), so a file whose row was lost is erased as well.
    """
    from generation.models import GeneratedImage, GenerationJob
    from generation.services import cancel_generation

    for job in GenerationJob.objects.filter(twin_id=twin.pk, status__in=GenerationJob.ACTIVE_STATUSES):
        with contextlib.suppress(Conflict):  # it finished meanwhile: its rows and files go below
            cancel_generation(job=job)
    names = [n for n in Selfie.objects.filter(twin_id=twin.pk).values_list("image", flat=True) if n]
    names += [n for n in GeneratedImage.objects.filter(job__twin_id=twin.pk).values_list("file", flat=True) if n]
    if twin.reference_face:
        names.append(twin.reference_face.name)
    prefixes = [f"twins/{twin.storage_key}", f"generations/{twin.storage_key}"]
    storage = default_storage
    with transaction.atomic():
        Twin.objects.filter(pk=twin.pk).delete()
        transaction.on_commit(lambda: sweep(storage, names, prefixes))
    logger.info("twin erased", extra={"twin": twin.pk, "files": len(names)})
