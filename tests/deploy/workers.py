"""Helpers for the tests that run real `qcluster` processes: a warm worker, a twin it needs no reload for."""

from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from generation.pipeline import SDXL_ID_EMBEDDING_DIM
from tests.factories import TwinFactory, unit_vector
from tests.workers import Worker, stop_workers, wait_for  # noqa: F401 - stop_workers is re-exported
from twins.models import Twin

WARM = "generation pipeline warm"
WARM_FAILED = "generation warm-up failed"


def token_client(user) -> APIClient:
    from accounts.services import get_or_create_api_token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {get_or_create_api_token(user=user).key}")
    return client


def twin_for_the_warm_pipeline(owner) -> Twin:
    """A ready twin with a 512-d identity: the size a gpu worker warms its pipeline for, so no job reloads it.

    (The staged test face models give 128-d embeddings, so outputs are stored unscored; the jobs still succeed.)
    """
    return TwinFactory(
        owner=owner,
        ready=True,
        embedding=unit_vector(SDXL_ID_EMBEDDING_DIM).tobytes(),
        embedding_dim=SDXL_ID_EMBEDDING_DIM,
    )


def wait_until_warm(worker: Worker, *, timeout: float = 180) -> None:
    """Until the worker process has loaded its models (generation/apps.py logs it), so timings are of jobs only."""

    def warm() -> bool:
        text = worker.log_path.read_text(errors="replace")
        if WARM_FAILED in text or worker.process.poll() is not None:
            pytest.fail(f"the worker did not warm up; its log:\n{worker.output()}")
        return WARM in text

    wait_for(warm, timeout=timeout, interval=0.2, what="the worker to warm up")


def processed_task_names(worker: Worker) -> list[str]:
    """Task names the worker's cluster reported as processed (one line per delivery it ran)."""
    return re.findall(r"Processed '[^']+' \(([^)]+)\)", worker.log_path.read_text(errors="replace"))
