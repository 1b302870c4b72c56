"""Seconds for one generation job on the `tiny` backend (CPU): python -m benchmarks.tiny_job

Four images at 30 steps through generation/pipeline/, first in a fresh process (loads, and if
needed builds, the tiny model), then warm. Not a test: a figure for the README and issue notes.
"""

from __future__ import annotations

import os
import time


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinsite.settings")
    os.environ.setdefault("LOG_LEVEL", "error")
    import numpy as np

    from benchmarks.common import reference_face
    from generation import pipeline

    embedding = np.random.default_rng(0).standard_normal(128).astype(np.float32)
    embedding /= np.linalg.norm(embedding)
    size = pipeline.default_image_size()
    request = pipeline.ImageRequest(
        prompt="studio portrait",
        negative_prompt="",
        seeds=[1, 2, 3, 4],
        steps=30,
        guidance=5.0,
        identity_strength=0.8,
        id_embedding=embedding,
        reference_face=reference_face(),
        width=size,
        height=size,
    )
    started = time.perf_counter()
    pipeline.generate_images(request=request)
    print(f"first job in a fresh process (loads the model): {time.perf_counter() - started:.2f} s")
    for _ in range(3):
        started = time.perf_counter()
        pipeline.generate_images(request=request)
        print(f"warm job, 4 images x 30 steps at {size}px: {time.perf_counter() - started:.2f} s")


if __name__ == "__main__":
    main()
