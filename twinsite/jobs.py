"""The one job machinery of the `gpu` cluster: claim, heartbeat, stale reaper, attempt count.

Enrollment (a `Twin` while `enrolling`) and generation (a `GenerationJob`) are both long tasks
that a worker may die in the middle of. django-q2 delivers such a task again `retry` seconds
after it was taken, and does not count the killed attempt (DESIGN.md, "Queue and scale"), so
each row keeps its own attempt counter and heartbeat, and every rule about them lives here:

- **claim**: one conditional update on the attempt counter, so of two deliveries exactly one
  wins; a row whose heartbeat is fresh belongs to a live worker and is left alone.
- **heartbeat**: the running worker touches the row as it goes; silence means it died.
- **reaper**: a schedule queues the task again for rows silent for too long, in case the
  broker itself lost it (a flushed queue, a task that timed out).
- **attempts**: the caller fails a job whose claim returns an attempt above its limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.utils import timezone

from twinsite.queue import enqueue_on_commit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobKind:
    """Which table holds a kind of job, and which of its fields the machinery reads and writes."""

    model: type[models.Model]
    active: dict[str, Any]  # the rows a worker may take: waiting, or started (perhaps by a dead worker)
    started: dict[str, Any]  # of those, the ones a worker has begun: what the reaper looks at
    attempts_field: str
    heartbeat_field: str
    stale_after_s: Callable[[], float]  # read at call time, so settings overridden in tests apply
    task_path: str  # the django-q2 task that runs one job, by dotted path
    task_label: str  # task names: f"{task_label}-{pk}" and "...-reaped"

    def stale_before(self, now: datetime | None = None) -> datetime:
        return (now or timezone.now()) - timedelta(seconds=self.stale_after_s())


def claim(kind: JobKind, pk: int, *, start: dict[str, Any] | None = None) -> int | None:
    """Take job `pk` for this worker: its attempt number (1 for the first start), or None.

    None means it is not ours to run: finished, cancelled, erased, or alive on another worker
    (started, with a fresh heartbeat). A row started by a worker that went silent is taken
    again and counted. `start` holds the fields to set on the winning update (status, ...).
    """
    row = kind.model.objects.filter(pk=pk, **kind.active).values(kind.attempts_field, kind.heartbeat_field).first()
    if row is None:
        return None
    attempts, heartbeat = row[kind.attempts_field], row[kind.heartbeat_field]
    now = timezone.now()
    if attempts > 0 and heartbeat is not None and heartbeat >= kind.stale_before(now):
        return None  # a duplicate delivery while the first one runs
    won = kind.model.objects.filter(pk=pk, **kind.active, **{kind.attempts_field: attempts}).update(
        **{kind.attempts_field: attempts + 1, kind.heartbeat_field: now}, **(start or {})
    )
    if not won:
        return None  # another delivery won the race
    if attempts:
        logger.warning(
            "restarting a job left by a dead worker", extra={"job": f"{kind.task_label}-{pk}", "attempt": attempts + 1}
        )
    return attempts + 1


def heartbeat(kind: JobKind, pk: int, **fields: Any) -> bool:
    """Touch a running job (and write `fields` with it); False when it is no longer active
    (erased, or reset by support), which tells the worker to stop quietly."""
    return bool(
        kind.model.objects.filter(pk=pk, **kind.active).update(**{kind.heartbeat_field: timezone.now()}, **fields)
    )


def stale_ids(kind: JobKind) -> list[int]:
    return list(
        kind.model.objects.filter(**kind.started, **{f"{kind.heartbeat_field}__lt": kind.stale_before()}).values_list(
            "pk", flat=True
        )
    )


def reap_stale(kind: JobKind) -> int:
    """Queue the task again for every started job whose heartbeat went silent; `claim` then
    decides whether it restarts (and counts the attempt) or finds it alive and does nothing."""
    ids = stale_ids(kind)
    for pk in ids:
        enqueue_on_commit(kind.task_path, pk, cluster="gpu", name=f"{kind.task_label}-{pk}-reaped")
    if ids:
        logger.warning("stale jobs queued again", extra={"kind": kind.task_label, "jobs": ids})
    return len(ids)
