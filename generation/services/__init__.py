"""Generation use cases, one module a side:

- `requests`: the web side: validate and submit a request, cancel, rerun, delete, zip;
- `runner`: the `gpu` worker's side: run a job to the end, score, save, or fail it readably
  (claim, heartbeat and reaper: twinsite/jobs.py).

Callers import the use cases from here (`from generation import services`).
"""

from __future__ import annotations

from generation.services.requests import (
    BEST_OF_RANGE,
    FACE_STRUCTURE_DEFAULT,
    FACE_STRUCTURE_RANGE,
    GUIDANCE_RANGE,
    IDENTITY_STRENGTH_RANGE,
    PROMPT_MAX_CHARS,
    RUN_TASK,
    SEED_MAX,
    STEPS_RANGE,
    cancel_generation,
    clean_prompt,
    delete_generated_image,
    delete_generation,
    rerun_generation,
    submit_generation,
    zip_job_images,
)
from generation.services.runner import GENERATION, MODELS_UNAVAILABLE_MESSAGE, reap_stale_generations, run_generation

__all__ = [
    "BEST_OF_RANGE",
    "FACE_STRUCTURE_DEFAULT",
    "FACE_STRUCTURE_RANGE",
    "GENERATION",
    "GUIDANCE_RANGE",
    "IDENTITY_STRENGTH_RANGE",
    "MODELS_UNAVAILABLE_MESSAGE",
    "PROMPT_MAX_CHARS",
    "RUN_TASK",
    "SEED_MAX",
    "STEPS_RANGE",
    "cancel_generation",
    "clean_prompt",
    "delete_generated_image",
    "delete_generation",
    "reap_stale_generations",
    "rerun_generation",
    "run_generation",
    "submit_generation",
    "zip_job_images",
]
