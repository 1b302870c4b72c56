"""Each worker process says what it can do: a heartbeat row naming the models it has loaded.

The web process never imports the ML stack, so it cannot look for itself. Every django-q2
worker process (both clusters) writes a `WorkerHeartbeat` row when it starts and every
WORKER_HEARTBEAT_S after; a `gpu` worker adds its face pack and generation pipeline, as
loaded (or the reason they are not). /system-status, /health/ready and the staff banner read
these rows (twinsite/readiness.py). Runs in worker processes only (generation/apps.py).

The same thread keeps the jobs alive (twinsite/jobs.py): every JOB_HEARTBEAT_S it beats the job
this process runs, from outside the run, so a long denoising step, the VAE or a compile never
looks like a dead worker; and a `gpu` worker queues again the jobs whose worker went silent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

logger = logging.getLogger(__name__)

# States of one model set, as the heartbeat reports them.
LOADED = "loaded"  # in memory, ready
AVAILABLE = "available"  # not loaded yet (no warm-up), but its files are in place
MISSING = "missing"  # its files are not where the worker looks
ERROR = "error"  # the files are there but loading failed
USABLE_STATES = (LOADED, AVAILABLE)

# Rows of processes that stopped without saying so are deleted after this long.
_FORGET_AFTER = timedelta(hours=1)

# What the warm-up (or a task) learnt about loading, keyed "face_models" / "generation".
_load_errors: dict[str, str] = {}
_started_at = timezone.now()
_thread: threading.Thread | None = None


def record_load_error(part: str, message: str) -> None:
    _load_errors[part] = message[:500]


def clear_load_error(part: str) -> None:
    _load_errors.pop(part, None)


def face_models_report() -> dict[str, Any]:
    from twins import face_pack, faces

    info = faces.loaded_model_info()
    if info is not None:
        return {
            "state": LOADED,
            "pack": info.pack,
            "root": info.root,
            "dim": info.dim,
            "providers": list(info.providers),
        }
    pack = face_pack.configured_pack()
    where = {"pack": pack, "root": str(settings.INSIGHTFACE_ROOT)}
    installed = face_pack.is_installed(pack=pack)
    if "face_models" in _load_errors:
        return {"state": ERROR if installed else MISSING, **where, "error": _load_errors["face_models"]}
    if installed:
        return {"state": AVAILABLE, **where}
    return {"state": MISSING, **where, "error": f"face pack {pack!r} not found in {face_pack.pack_dir(pack=pack)}"}


def generation_report() -> dict[str, Any]:
    from generation import pipeline

    summary = pipeline.loaded_summary()
    if summary is not None:
        return {"state": LOADED, **summary}
    base = {"backend": settings.TWIN_BACKEND, "preset": settings.TWIN_PERF_PRESET}
    if "generation" in _load_errors:
        return {"state": ERROR, **base, "error": _load_errors["generation"]}
    if settings.TWIN_BACKEND == "sdxl":
        try:
            pipeline.resolve_sources(backend="sdxl", id_embedding_dim=pipeline.SDXL_ID_EMBEDDING_DIM)
        except pipeline.ModelWeightsMissing as exc:
            return {"state": MISSING, **base, "error": str(exc)}
    # The tiny backend builds its random-weight folder on first use: nothing can be missing.
    return {"state": AVAILABLE, **base}


def capabilities(cluster: str) -> dict[str, Any]:
    if cluster != "gpu":
        return {}  # the default cluster does light work: being alive is all it reports
    return {"face_models": face_models_report(), "generation": generation_report()}


def beat(*, cluster: str) -> None:
    """Write this process's row now (and forget rows of processes long gone)."""
    from generation.models import WorkerHeartbeat

    report = capabilities(cluster)
    faces_ok = report.get("face_models", {}).get("state") in USABLE_STATES
    generation_ok = report.get("generation", {}).get("state") in USABLE_STATES
    now = timezone.now()
    host, pid = socket.gethostname(), os.getpid()
    WorkerHeartbeat.objects.update_or_create(
        name=f"{cluster}@{host}:{pid}",
        defaults={
            "cluster": cluster,
            "host": host,
            "pid": pid,
            "started_at": _started_at,
            "seen_at": now,
            # Generation scores every image with the face models, so it needs both.
            "can_enroll": faces_ok,
            "can_generate": faces_ok and generation_ok,
            "capabilities": report,
        },
    )
    WorkerHeartbeat.objects.filter(seen_at__lt=now - _FORGET_AFTER).delete()


def _job_kinds() -> list:
    from generation.services import GENERATION
    from twins.services import ENROLLMENT

    return [GENERATION, ENROLLMENT]


def watch_jobs(*, cluster: str) -> None:
    """One tick of the job side: beat the jobs this process holds; on `gpu`, queue again the jobs
    of workers gone silent (any live gpu worker may notice; one conditional update decides)."""
    from twinsite import jobs

    jobs.beat_held()
    if cluster == "gpu":
        for kind in _job_kinds():
            jobs.requeue_dead(kind)


def requeue_predecessors(*, proc_name: str) -> None:
    """At a gpu worker's start: queue again at once the jobs a dead process of this host held."""
    from twinsite import jobs

    try:
        for kind in _job_kinds():
            jobs.requeue_predecessors(kind)
    except DatabaseError as exc:  # the silence rule (requeue_dead) still brings them back
        logger.warning("could not look for a dead predecessor's jobs: %s", exc, extra={"worker": proc_name})
    finally:
        close_old_connections()


def start_heartbeat(*, cluster: str, proc_name: str) -> None:
    """Beat once now, then the worker row every WORKER_HEARTBEAT_S and the jobs every JOB_HEARTBEAT_S,
    in a daemon thread of this worker process."""
    global _thread
    if _thread is not None and _thread.is_alive():
        return

    def guarded(what: str, step) -> None:
        try:
            step()
        except DatabaseError as exc:  # the database is down: the next beat tries again
            logger.warning("%s heartbeat failed: %s", what, exc, extra={"worker": proc_name})
        except Exception:
            logger.exception("%s heartbeat failed", what, extra={"worker": proc_name})
        finally:
            close_old_connections()

    def loop() -> None:
        next_worker_beat = 0.0
        while True:
            guarded("job", lambda: watch_jobs(cluster=cluster))
            if time.monotonic() >= next_worker_beat:
                guarded("worker", lambda: beat(cluster=cluster))
                next_worker_beat = time.monotonic() + settings.WORKER_HEARTBEAT_S
            time.sleep(min(settings.JOB_HEARTBEAT_S, settings.WORKER_HEARTBEAT_S))

    _thread = threading.Thread(target=loop, name=f"heartbeat-{proc_name}", daemon=True)
    _thread.start()
