"""Running generations: a request in, one image per seed out, on the pipeline this process keeps warm."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings

from generation.pipeline.errors import EmbeddingMismatch, ModelWeightsMissing, PipelineError
from generation.pipeline.identity import (
    FACE_STRUCTURE_DEFAULT,
    _clip_embeds,
    _required_reference_face,
    _set_face_structure,
    _set_identity_strength,
    warm_up_face,
)
from generation.pipeline.loading import _CACHE, LoadedPipeline, _cached_pipeline, _pick_device
from generation.pipeline.presets import RECIPES, call_size, compiles, pipeline_calls
from generation.pipeline.sources import SDXL_ID_EMBEDDING_DIM, check_embedding_dim

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    negative_prompt: str
    seeds: list[int]
    steps: int
    guidance: float
    identity_strength: float
    id_embedding: np.ndarray  # float32, L2-normalised, shape (dim,)
    # The twin's reference face (twins/faces.py reference_crop); required: without it "Plus" would be plain FaceID.
    reference_face: Image.Image | None
    width: int
    height: int
    # The face-structure weight of FaceID Plus v2 (the demo's s_scale; diffusers' shortcut_scale).
    face_structure: float = FACE_STRUCTURE_DEFAULT
    # The face model that produced id_embedding (Twin.embedding_model); only named in errors.
    embedding_model: str = ""
    # The job's recipe (presets.RECIPES): scheduler and UNet weights; steps and guidance come set for it.
    preset: str = "default"


def generate_images(*, request: ImageRequest, on_step: Callable[[int, int], None] | None = None) -> list[Image.Image]:
    """One image per seed, from the pipeline kept warm in this process."""
    dim = _id_embedding_size(request.id_embedding)
    check_embedding_dim(backend=settings.TWIN_BACKEND, dim=dim, embedding_model=request.embedding_model)
    loaded = _cached_pipeline(id_embedding_dim=dim)
    return run_pipeline(loaded, request, on_step)


def plan_calls(seeds: list[int]) -> list[list[int]]:
    """The pipeline calls a job's seeds take on this worker: the job runner sends one request per call,
    so its progress total (steps x calls) is what the pipeline really runs, and each call is a shape
    warm_up compiled. Compiled or not is the loaded pipeline's, else what loading would do here."""
    loaded = next(iter(_CACHE.values()), None)
    compiled = loaded.compiled if loaded else compiles(settings.TWIN_PERF_PRESET, _pick_device(None).type)
    return pipeline_calls(seeds, compiled=compiled)


def warm_batch_counts() -> list[int]:
    """The batch sizes warm_up compiles: one image and a full call (the only two pipeline_calls makes compiled)."""
    return sorted({1, call_size()})


def warm_up(*, id_embedding_dim: int | None = None) -> None:
    """Load the pipeline at worker start; on CUDA also compile and run a short generation.

    `id_embedding_dim` defaults to the FaceID size of the backend (512, buffalo_l); a twin
    with another size makes the tiny backend load again for that size.
    """
    import numpy as np

    dim = id_embedding_dim or SDXL_ID_EMBEDDING_DIM
    started = time.perf_counter()
    loaded = _cached_pipeline(id_embedding_dim=dim)
    if loaded.device.type == "cuda":
        size = default_image_size()
        embedding = np.ones(dim, dtype=np.float32) / np.sqrt(dim)
        # The two batch shapes run_pipeline uses on a compiled UNet (one image, a full call of
        # call_size()): each compiles once here (or loads from the compile cache), never during a job.
        # Two strengths and two face-structure weights: changing either must not recompile.
        shapes = zip(warm_batch_counts(), ((0.8, 1.0), (0.7, 0.5)), strict=False)
        for count, (strength, structure) in shapes:
            request = ImageRequest(
                prompt="a portrait photo of a person",
                negative_prompt="",
                seeds=list(range(count)),
                steps=2,
                guidance=5.0,
                identity_strength=strength,
                id_embedding=embedding,
                reference_face=warm_up_face(),
                width=size,
                height=size,
                face_structure=structure,
            )
            run_pipeline(loaded, request)
            loaded.warm_shapes.append(f"{count}x{size}x{size}")
        if loaded.compiled:
            import torch

            # A job the warm graph cannot serve runs eager for that call rather than stalling
            # its user for a multi-minute recompile.
            torch.compiler.set_stance("eager_on_recompile")
    logger.info("generation pipeline warm in %.1f s (%s)", time.perf_counter() - started, loaded.backend)


def default_image_size() -> int:
    if settings.TWIN_BACKEND == "tiny":
        return settings.TWIN_TINY_IMAGE_SIZE
    return settings.TWIN_IMAGE_SIZE


def run_pipeline(
    loaded: LoadedPipeline, request: ImageRequest, on_step: Callable[[int, int], None] | None = None
) -> list[Image.Image]:
    """Generate one image per seed with a loaded pipeline; on_step(done, total) after every step."""
    import torch

    embedding = _validated_embedding(request, loaded.id_embedding_dim)
    _validate_request(request)
    pipe = loaded.pipe
    device, dtype = loaded.device, loaded.dtype
    seeds = [int(seed) for seed in request.seeds]
    chunks = pipeline_calls(seeds, compiled=loaded.compiled)
    total = request.steps * len(chunks)
    done = 0
    use_cfg = request.guidance > 1.0  # the pipeline skips the negative branch at guidance <= 1
    face = _required_reference_face(request.reference_face)

    def on_step_end(_pipe: Any, _index: int, _timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        nonlocal done
        done += 1
        if on_step is not None:
            on_step(done, total)  # may raise GenerationCancelled: it propagates out of pipe()
        return callback_kwargs

    images: list[Image.Image] = []
    with loaded.lock, torch.inference_mode():
        id_embeds = torch.from_numpy(embedding).to(device=device, dtype=dtype).reshape(1, 1, -1)
        if use_cfg:
            id_embeds = torch.cat([torch.zeros_like(id_embeds), id_embeds])  # negative half first
        _use_recipe(loaded, request.preset)
        _set_identity_strength(loaded, request.identity_strength)
        _set_face_structure(loaded, request.face_structure)
        projection = loaded.face_projection
        try:
            for chunk in chunks:
                projection.clip_embeds = _clip_embeds(loaded, face, count=len(chunk), use_cfg=use_cfg)
                generators = [torch.Generator(device=device).manual_seed(seed) for seed in chunk]
                result = pipe(
                    prompt=request.prompt,
                    # None (not "") lets SDXL use zero negative embeddings, as it was trained.
                    negative_prompt=request.negative_prompt or None,
                    num_inference_steps=request.steps,
                    guidance_scale=request.guidance,
                    width=request.width,
                    height=request.height,
                    num_images_per_prompt=len(chunk),
                    generator=generators,
                    ip_adapter_image_embeds=[id_embeds],
                    callback_on_step_end=on_step_end,
                    output_type="pil",
                )
                images.extend(result.images)
        except torch.OutOfMemoryError as exc:
            raise PipelineError(
                f"The GPU ran out of memory generating {len(chunks[0])} images of {request.width}x{request.height}; "
                "lower TWIN_MAX_BATCH_IMAGES or the image size"
            ) from exc
        finally:
            projection.clip_embeds = None
    return images


def _use_recipe(loaded: LoadedPipeline, name: str) -> None:
    """The recipe's scheduler, and its UNet weights copied in place (the compiled graphs stay valid)."""
    recipe = RECIPES.get(name)
    if recipe is None:
        raise PipelineError(f"unknown preset {name!r} (expected one of {', '.join(RECIPES)})")
    if loaded.recipe_weights is not None:
        loaded.recipe_weights.use(name)
    elif recipe.lora:
        raise ModelWeightsMissing(f"This worker cannot run the {name} preset: {loaded.turbo_problem}")
    loaded.pipe.scheduler = loaded.schedulers.get(name) or loaded.pipe.scheduler


def _id_embedding_size(embedding: Any) -> int:
    import numpy as np

    return int(np.asarray(embedding).size)


def _validated_embedding(request: ImageRequest, expected_dim: int) -> np.ndarray:
    import numpy as np

    embedding = np.asarray(request.id_embedding, dtype=np.float32).reshape(-1)
    if embedding.size != expected_dim:
        source = f" from {request.embedding_model}" if request.embedding_model else ""
        raise EmbeddingMismatch(
            f"this pipeline takes {expected_dim}-d face embeddings; this twin has {embedding.size}-d{source}"
        )
    if not np.all(np.isfinite(embedding)):
        raise PipelineError("the twin's face embedding contains NaN or infinite values; enroll the twin again")
    return np.ascontiguousarray(embedding)


def _validate_request(request: ImageRequest) -> None:
    problems = []
    if not request.seeds:
        problems.append("at least one seed is needed")
    if request.steps < 1:
        problems.append(f"steps must be at least 1, got {request.steps}")
    if request.guidance < 0:
        problems.append(f"guidance must not be negative, got {request.guidance}")
    if request.identity_strength < 0:
        problems.append(f"identity strength must not be negative, got {request.identity_strength}")
    if request.face_structure < 0:
        problems.append(f"face structure must not be negative, got {request.face_structure}")
    for name, value in (("width", request.width), ("height", request.height)):
        if value < 8 or value % 8:
            problems.append(f"{name} must be a positive multiple of 8, got {value}")
    if problems:
        raise ValueError("; ".join(problems))
