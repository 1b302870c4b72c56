"""django-q2 entry points for the `gpu` cluster: ids in, one service call, nothing else."""

from __future__ import annotations

from generation import services


def run_generation(job_id: int) -> None:
    services.run_generation(job_id=job_id)


def reap_stale_generations() -> int:
    return services.reap_stale_generations()
