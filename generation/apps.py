from __future__ import annotations

import logging
import os
import sys

from django.apps import AppConfig

logger = logging.getLogger(__name__)


def _start_worker(sender: object, proc_name: str, **kwargs: object) -> None:
    """Each worker process reports itself with a heartbeat; a `gpu` one first loads its models."""
    from django_q.conf import Conf

    from generation import worker_status

    if Conf.SYNC:
        # Q_SYNC runs each task inline in the calling process (a test, a shell): that is no worker, and
        # it must not report itself as one, nor start a heartbeat thread there.
        return
    cluster = os.environ.get("Q_CLUSTER_NAME") or "default"
    if cluster == "gpu":
        # The worker this one replaces may have died holding a job: queued again now, before the warm-up, so
        # a live worker of the cluster runs it at once instead of after the silence (or this one, once warm).
        worker_status.requeue_predecessors(proc_name=proc_name)
        # Warm-up (a compile, on CUDA) comes before any job is taken, so it never looks like a dead worker.
        _warm_up_gpu_worker(proc_name)
    worker_status.start_heartbeat(cluster=cluster, proc_name=proc_name)


def _warm_up_gpu_worker(proc_name: str) -> None:
    """Load (and on CUDA compile) the face models and the pipeline before taking the first job."""
    from django.conf import settings

    from generation import worker_status

    if not settings.TWIN_WARM_UP:
        return
    from generation import pipeline
    from twins import faces

    # One worker process per GPU: the card is whichever CUDA_VISIBLE_DEVICES leaves visible (cuda:0 inside).
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
    face_dim = None
    try:
        face_dim = faces.warm_up().dim  # enrollment and identity scoring use them
    except Exception as exc:
        worker_status.record_load_error("face_models", str(exc))
        logger.warning("face models not warm: %s", exc, extra={"worker": proc_name})
    try:
        # Warm the adapter for the embedding size this worker's face pack gives: that is what twins carry.
        pipeline.warm_up(id_embedding_dim=face_dim)
        device = (pipeline.loaded_summary() or {}).get("device", "?")
        torch = sys.modules.get("torch")  # loaded by the warm-up; never imported just for this
        cards = torch.cuda.device_count() if torch is not None and torch.cuda.is_available() else 0
        if cards > 1:
            logger.warning(
                "%d GPUs are visible but this worker uses only %s: run one gpu worker per card, each "
                "with its own CUDA_VISIBLE_DEVICES",
                cards,
                device,
                extra={"worker": proc_name},
            )
        logger.info(
            "generation pipeline warm on %s (CUDA_VISIBLE_DEVICES=%s)",
            device,
            visible,
            extra={
                "worker": proc_name,
                "backend": settings.TWIN_BACKEND,
                "device": device,
                "cuda_visible_devices": visible,
            },
        )
    except Exception as exc:
        # A broken model must not stop the worker: each job will then fail with the readable reason.
        worker_status.record_load_error("generation", str(exc))
        logger.exception("generation warm-up failed", extra={"worker": proc_name, "cuda_visible_devices": visible})


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        post_spawn.connect(_start_worker, dispatch_uid="twinsite-worker-start")
