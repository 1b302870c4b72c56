"""Can this site enroll and generate right now? Read from the workers' heartbeats, never guessed.

The web process cannot load the models itself (it never imports the ML stack); each worker
process reports what it has loaded (generation/worker_status.py). /health/ready, /system-status
and the staff banner all ask `check_readiness()`, so they never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

# A worker that missed this many heartbeats in a row counts as gone.
MISSED_BEATS_ALLOWED = 3


@dataclass(frozen=True)
class Readiness:
    database_ok: bool
    database_detail: str
    workers: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not self.problems

    @property
    def models_missing(self) -> bool:
        """A live gpu worker lacks a model: what the staff banner is for."""
        return any(not (w["can_enroll"] and w["can_generate"]) for w in self.workers if w["cluster"] == "gpu")


def database_status() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return False, str(exc).strip().splitlines()[0][:200] if str(exc).strip() else exc.__class__.__name__
    return True, connection.vendor


def live_workers() -> list[dict[str, Any]]:
    from generation.models import WorkerHeartbeat

    now = timezone.now()
    alive_since = now - timedelta(seconds=settings.WORKER_HEARTBEAT_S * MISSED_BEATS_ALLOWED)
    return [
        {
            "cluster": row.cluster,
            "host": row.host,
            "pid": row.pid,
            "started_at": row.started_at.isoformat(),
            "seen_s_ago": round((now - row.seen_at).total_seconds(), 1),
            "can_enroll": row.can_enroll,
            "can_generate": row.can_generate,
            **row.capabilities,
        }
        for row in WorkerHeartbeat.objects.filter(seen_at__gte=alive_since)
    ]


def _why_not(gpu_workers: list[dict[str, Any]], part: str) -> str:
    for worker in gpu_workers:
        report = worker.get(part) or {}
        if report.get("error"):
            return f"{worker['host']}:{worker['pid']}: {report['error']}"
    return "see each worker below"


def check_readiness() -> Readiness:
    db_ok, db_detail = database_status()
    if not db_ok:
        return Readiness(
            database_ok=False,
            database_detail=db_detail,
            problems=[f"database unavailable: {db_detail}"],
            checks={"database": False},
        )
    workers = live_workers()
    gpu = [w for w in workers if w["cluster"] == "gpu"]
    checks = {
        "database": True,
        "default_worker": any(w["cluster"] == "default" for w in workers),
        "gpu_worker": bool(gpu),
        "enroll": any(w["can_enroll"] for w in gpu),
        "generate": any(w["can_generate"] for w in gpu),
    }
    problems = []
    if not checks["default_worker"]:
        problems.append("no live worker of the default cluster: start `./twinsite.sh worker default`")
    if not gpu:
        problems.append(
            "no live worker of the gpu cluster: start `./twinsite.sh worker gpu`; "
            "nothing can be enrolled or generated until one runs"
        )
    else:
        if not checks["enroll"]:
            problems.append(
                f"no gpu worker can enroll (face models): {_why_not(gpu, 'face_models')}. "
                "Fix: `./twinsite.sh manage fetch_models` (or `fetch_models --from <folder>`, "
                "or set INSIGHTFACE_ROOT/INSIGHTFACE_PACK), then restart the gpu worker"
            )
        if not checks["generate"]:
            part = "face_models" if not checks["enroll"] else "generation"
            problems.append(f"no gpu worker can generate: {_why_not(gpu, part)}")
    return Readiness(database_ok=True, database_detail=db_detail, workers=workers, problems=problems, checks=checks)
