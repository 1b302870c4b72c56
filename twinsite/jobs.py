"""The one job machinery of the `gpu` cluster: claim, heartbeat, stale reaper, attempt count.

Enrollment (a `Twin` while `enrolling`) and generation (a `GenerationJob`) are both long tasks
that a worker may die in the middle of. django-q2 delivers such a task again `retry` seconds
after it was taken, and does not count the killed attempt (DESIGN.md, "Queue and scale"), so
each row keeps its own attempt counter and heartbeat, and every rule about them lives here:

- **claim**: one conditional update on the attempt counter, so of two deliveries exactly one
  wins; the winner records itself as the row's holder (`host:pid`). A row with a holder and a
  fresh heartbeat belongs to a live worker and is left alone.
- **heartbeat**: the running worker touches the row as it goes, and, in a worker process, the
  heartbeat thread (generation/worker_status.py) beats every job this process holds every
  JOB_HEARTBEAT_S, however long a denoising step, the VAE or a compile takes. So silence for a
  few beats (the *_STALE_AFTER_S settings, 15 s) means the process is gone, not that it is busy.
- **restart**: every live worker's heartbeat thread looks for started rows gone silent, takes
  the dead holder's name off them (one conditional update, so one worker does it) and queues
  the task again; a worker that starts up does the same at once for rows held by a process of
  its own host that no longer exists (its killed predecessor), without waiting out the silence.
  A row with no holder is free for the next claim: the job page says it is waiting to restart.
- **reaper**: a schedule (every minute) queues the task again for every row silent for too
  long, in case the queued copy itself was lost (a flushed queue, a task that timed out).
- **attempts**: the caller fails a job whose claim returns an attempt above its limit.
- **ownership**: `still_held` tells a run, before it makes its results visible, that it is still
  the holder of the attempt it claimed, so a run thought dead never adds a second set of results.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
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
    holder_field: str  # "host:pid" of the process running it; "" before the first claim and once released
    stale_after_s: Callable[[], float]  # read at call time, so settings overridden in tests apply
    task_path: str  # the django-q2 task that runs one job, by dotted path
    task_label: str  # task names: f"{task_label}-{pk}" and "...-reaped"

    def stale_before(self, now: datetime | None = None) -> datetime:
        return (now or timezone.now()) - timedelta(seconds=self.stale_after_s())


def this_process() -> str:
    """The holder name this process writes on the rows it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"


# The jobs this process holds (claimed, not yet let go): what the heartbeat thread beats.
_held: dict[tuple[str, int], JobKind] = {}
_held_lock = threading.Lock()


def claim(kind: JobKind, pk: int, *, start: dict[str, Any] | None = None) -> int | None:
    """Take job `pk` for this worker: its attempt number (1 for the first start), or None.

    None means it is not ours to run: finished, cancelled, erased, or alive on another worker
    (a holder, and a fresh heartbeat). A row started by a worker that went silent, or released
    by `requeue_dead`, is taken again and counted. `start` holds the fields to set on the winning
    update (status, ...). The caller calls `let_go` when the run ends.
    """
    fields = (kind.attempts_field, kind.heartbeat_field, kind.holder_field)
    row = kind.model.objects.filter(pk=pk, **kind.active).values(*fields).first()
    if row is None:
        return None
    attempts, heartbeat, holder = (row[f] for f in fields)
    now = timezone.now()
    if attempts > 0 and holder and heartbeat is not None and heartbeat >= kind.stale_before(now):
        return None  # a duplicate delivery while the first one runs
    won = kind.model.objects.filter(pk=pk, **kind.active, **{kind.attempts_field: attempts}).update(
        **{kind.attempts_field: attempts + 1, kind.heartbeat_field: now, kind.holder_field: this_process()},
        **(start or {}),
    )
    if not won:
        return None  # another delivery won the race
    with _held_lock:
        _held[(kind.task_label, pk)] = kind
    if attempts:
        logger.warning(
            "restarting a job left by a dead worker",
            extra={"job": f"{kind.task_label}-{pk}", "attempt": attempts + 1, "dead_worker": holder or "?"},
        )
    return attempts + 1


def let_go(kind: JobKind, pk: int) -> None:
    """The run of `pk` in this process ended (finished, failed, or stopped): stop beating it."""
    with _held_lock:
        _held.pop((kind.task_label, pk), None)


def held() -> list[tuple[JobKind, int]]:
    with _held_lock:
        return [(kind, pk) for (_label, pk), kind in _held.items()]


def _ours(kind: JobKind, pk: int) -> models.QuerySet:
    return kind.model.objects.filter(pk=pk, **kind.active, **{kind.holder_field: this_process()})


def heartbeat(kind: JobKind, pk: int, **fields: Any) -> bool:
    """Touch a running job (and write `fields` with it); False when it is no longer this process's
    to run (erased, reset by support, or restarted elsewhere after this worker was thought dead),
    which tells the worker to stop quietly."""
    return bool(_ours(kind, pk).update(**{kind.heartbeat_field: timezone.now()}, **fields))


def still_held(kind: JobKind, pk: int, *, attempt: int) -> models.QuerySet:
    """The row, if this process still runs attempt `attempt` of it: the last check before a run
    makes its results visible (lock it with select_for_update, or test .exists())."""
    return _ours(kind, pk).filter(**{kind.attempts_field: attempt})


def beat_held() -> int:
    """Beat every job this process holds (the worker's heartbeat thread calls this every
    JOB_HEARTBEAT_S, whatever the run is doing); a row no longer ours is forgotten."""
    beaten = 0
    for kind, pk in held():
        if heartbeat(kind, pk):
            beaten += 1
        else:
            let_go(kind, pk)
    return beaten


def _release_and_queue(kind: JobKind, pk: int, holder: str, *, why: str, silent: bool) -> bool:
    """Take the dead `holder`'s name off row `pk` (only if it still has it: of several workers
    that notice, one wins) and queue its task again; the next claim restarts it."""
    still = {kind.holder_field: holder}
    if silent:
        still[f"{kind.heartbeat_field}__lt"] = kind.stale_before()
    if not kind.model.objects.filter(pk=pk, **kind.started, **still).update(**{kind.holder_field: ""}):
        return False
    enqueue_on_commit(kind.task_path, pk, cluster="gpu", name=f"{kind.task_label}-{pk}-restart")
    logger.warning(
        "job of a dead worker queued again", extra={"job": f"{kind.task_label}-{pk}", "dead_worker": holder, "why": why}
    )
    return True


def requeue_dead(kind: JobKind) -> int:
    """Queue again, once each, the started jobs whose holder went silent (a live worker's heartbeat
    thread calls this every beat, so a dead worker's job waits about *_STALE_AFTER_S, not a minute)."""
    rows = kind.model.objects.filter(**kind.started, **{f"{kind.heartbeat_field}__lt": kind.stale_before()}).exclude(
        **{kind.holder_field: ""}
    )
    pairs = list(rows.values_list("pk", kind.holder_field))
    return sum(_release_and_queue(kind, pk, holder, why="silent", silent=True) for pk, holder in pairs)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def requeue_predecessors(kind: JobKind) -> int:
    """At a worker's start, before it takes a job: queue again at once the started jobs held by a
    process of this host that is gone (the worker this one replaces, killed or out of memory), or
    by this very pid (a restarted container reuses pids; this process holds nothing yet)."""
    host, pid = socket.gethostname(), os.getpid()
    rows = kind.model.objects.filter(**kind.started, **{f"{kind.holder_field}__startswith": f"{host}:"})
    released = 0
    for pk, holder in rows.values_list("pk", kind.holder_field):
        _host, _sep, holder_pid = holder.rpartition(":")
        if not holder_pid.isdigit() or (int(holder_pid) != pid and _process_exists(int(holder_pid))):
            continue
        released += _release_and_queue(kind, pk, holder, why="predecessor gone", silent=False)
    return released


def waiting_to_restart(kind: JobKind, row: models.Model) -> bool:
    """A started job whose worker is gone (silent, or already noticed and released), waiting for the
    next claim: what the job page says instead of a step counter that no longer moves."""
    started = all(getattr(row, field) == value for field, value in kind.started.items())  # plain equalities
    if not started or not getattr(row, kind.attempts_field):
        return False
    heartbeat = getattr(row, kind.heartbeat_field)
    return not getattr(row, kind.holder_field) or heartbeat is None or heartbeat < kind.stale_before()


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
