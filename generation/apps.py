from __future__ import annotations

import logging
import os

from django.apps import AppConfig

logger = logging.getLogger(__name__)


def _warm_up_gpu_worker(sender: object, proc_name: str, **kwargs: object) -> None:
    """Each `gpu` worker process loads (and on CUDA compiles) the pipeline before taking its first job."""
    from django.conf import settings

    if os.environ.get("Q_CLUSTER_NAME") != "gpu" or not settings.TWIN_WARM_UP:
        return
    from generation import pipeline

    try:
        pipeline.warm_up()
        logger.info("generation pipeline warm", extra={"worker": proc_name, "backend": settings.TWIN_BACKEND})
    except Exception:
        # A broken model must not stop the worker: each job will then fail with the readable reason.
        logger.exception("generation warm-up failed", extra={"worker": proc_name})


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        post_spawn.connect(_warm_up_gpu_worker, dispatch_uid="twinsite-gpu-warm-up")
