"""What the GPU benchmarks share: their environment, the model folder they use, the job they time.

Nothing here imports torch or Django at import time: each benchmark configures the
environment first (settings read it on first use), then loads the ML stack.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from generation.pipeline import ImageRequest

# The clock of log(): this module is imported as a benchmark starts.
T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
PROMPT = "a portrait photo of a person in a cafe, natural light, 85mm"
NEGATIVE_PROMPT = "blurry, low quality"


def log(*parts: object) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s]", *parts, flush=True)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that say which model folder, compile cache and cache folder a benchmark uses."""
    parser.add_argument("--model-dir", default="", help="model folder (default /tmp/twinsite-{full-sdxl,tiny-bench})")
    parser.add_argument("--cache-dir", default="/tmp/twinsite-models", help="TWIN_MODELS_DIR: holds the compile cache")
    parser.add_argument("--compile-cache-in", default="", help="torch mega-cache (.xz) of an earlier run, loaded first")


def configure_environment(*, cache_dir: str) -> None:
    """Settings for generation/pipeline/ without django.setup(): it reads settings and needs no
    app registry, so the GPU machine needs just Django and diffusers beside its own torch."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinsite.settings")
    os.environ.setdefault("TWINSITE_DATA_DIR", "/tmp/twinsite-bench-data")
    os.environ["TWIN_MODELS_DIR"] = cache_dir
    os.environ.setdefault("LOG_FORMAT", "text")
    os.environ.setdefault("LOG_LEVEL", "warning")


def default_model_dir(*, smoke: bool) -> Path:
    """The random-weight folder: tiny for a CPU smoke run, the full SDXL shapes (9.3 GB) on a GPU."""
    return Path("/tmp/twinsite-tiny-bench" if smoke else "/tmp/twinsite-full-sdxl")


def reference_face() -> Image.Image:
    """A stand-in reference face for the CLIP image encoder: FaceID Plus v2 always gets one (issue 22)."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (256, 256), (90, 110, 140))
    ImageDraw.Draw(image).ellipse((50, 30, 206, 230), fill=(224, 172, 140))
    return image


def portrait_request(
    *,
    seeds: list[int],
    steps: int,
    side: int,
    embedding: Any,
    reference_face: Image.Image | None,
    strength: float = 0.8,
    preset: str = "default",
) -> ImageRequest:
    """The job every benchmark times: one prompt, guidance 5, a square image of `side` pixels.

    A recipe with its own steps and guidance (turbo) gets those, as the job service sets them.
    """
    from generation.pipeline import ImageRequest
    from generation.pipeline.presets import RECIPES

    recipe = RECIPES[preset]

    return ImageRequest(
        prompt=PROMPT,
        negative_prompt=NEGATIVE_PROMPT,
        seeds=seeds,
        steps=recipe.steps or steps,
        guidance=5.0 if recipe.guidance is None else recipe.guidance,
        identity_strength=strength,
        id_embedding=embedding,
        reference_face=reference_face,
        width=side,
        height=side,
        preset=preset,
    )
