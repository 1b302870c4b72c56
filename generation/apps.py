from __future__ import annotations

import logging
import os
import sys

from django.apps import AppConfig

logger = logging.getLogger(__name__)


def _warm_up_gpu_worker(sender: object, proc_name: str, **kwargs: object) -> None:
    """Each `gpu` worker process loads (and on CUDA compiles) the pipeline before taking its first job."""
    from django.conf import settings

    if os.environ.get("Q_CLUSTER_NAME") != "gpu" or not settings.TWIN_WARM_UP:
        return
    from generation import pipeline
    from twins import faces

    # One worker process per GPU: the card is whichever CUDA_VISIBLE_DEVICES leaves visible (cuda:0 inside).
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "all")
    try:
        faces.warm_up()  # enrollment and identity scoring use them; the first job shouldn't pay for loading
    except Exception as exc:
        logger.warning("face models not warm: %s", exc, extra={"worker": proc_name})
    try:
        pipeline.warm_up()
        device = pipeline.backend_versions().get("device", "?")
        torch = sys.modules.get("torch")  # loaded by the warm-up; never imported just for this
        cards = torch.cuda.device_count() if torch is not None and torch.cuda.is_available() else 0
        if cards > 1:
            logger.warning("%d GPUs are visible but this worker uses only %s: run one gpu worker per card, each "
                           "with its own CUDA_VISIBLE_DEVICES", cards, device, extra={"worker": proc_name})
        logger.info("generation pipeline warm on %s (CUDA_VISIBLE_DEVICES=%s)", device, visible,
                    extra={"worker": proc_name, "backend": settings.TWIN_BACKEND, "device": device,
                           "cuda_visible_devices": visible})
    except Exception:
        # A broken model must not stop the worker: each job will then fail with the readable reason.
        logger.exception("generation warm-up failed", extra={"worker": proc_name, "cuda_visible_devices": visible})


class GenerationConfig(AppConfig):
    name = "generation"
    verbose_name = "Generation"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        post_spawn.connect(_warm_up_gpu_worker, dispatch_uid="twinsite-gpu-warm-up")
