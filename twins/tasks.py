"""django-q2 entry points of the twins app (run on the `gpu` cluster). Thin: load, call one service."""

from __future__ import annotations

import logging

from twins import services
from twins.models import Twin

logger = logging.getLogger(__name__)


def enroll_twin_task(twin_id: int) -> str:
    twin = Twin.objects.filter(pk=twin_id).first()
    if twin is None:  # erased after it was queued: nothing to do
        logger.info("enrollment skipped: twin gone", extra={"twin": twin_id})
        return "deleted"
    return services.enroll_twin(twin=twin).status


def purge_expired_selfies_task() -> int:
    """Daily (schedule in twins/migrations/0002): the retention setting SELFIE_RETENTION_DAYS."""
    return services.purge_expired_selfies()


def reap_stale_enrollments_task() -> int:
    """Every minute (schedule in twins/migrations/0002): enrollments whose worker is gone."""
    return services.reap_stale_enrollments()
