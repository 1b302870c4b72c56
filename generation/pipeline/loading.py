"""Loading the pipeline from local files, and the one loaded pipeline this worker process keeps warm.

The load (`load_pipeline`) wires the FaceID Plus v2 adapter and applies the preset's
performance options (presets.py); the per-process cache (`_cached_pipeline`) loads once per
model set and tells the heartbeat and the job record what it holds (`loaded_summary`,
`run_record`) without loading anything itself.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from generation.pipeline.errors import EmbeddingMismatch, ModelWeightsMissing, PipelineError
from generation.pipeline.identity import install_face_structure_buffer, unit_ip_value_weights
from generation.pipeline.presets import PRESETS, RECIPES, RESTING_RECIPE, _apply_performance_options, make_scheduler
from generation.pipeline.sources import (
    _FETCH_HINT,
    BACKENDS,
    ModelSources,
    check_embedding_dim,
    resolve_sources,
    resolve_turbo_lora,
)
from generation.pipeline.weights import RecipeWeights, fuse_lora_file

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionXLPipeline

logger = logging.getLogger(__name__)


@dataclass
class LoadedPipeline:
    pipe: StableDiffusionXLPipeline
    backend: str
    preset: str
    id_embedding_dim: int
    device: torch.device
    dtype: torch.dtype
    sources: ModelSources
    performance_options: list[str]
    load_seconds: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    # The IP-Adapter value projections at strength 1 (see _set_identity_strength).
    unit_value_weights: list[Any] = field(default_factory=list)
    identity_strength: float | None = None
    # The (images x size) shapes warm_up ran, so compiled graphs exist for them: the heartbeat reports these.
    warm_shapes: list[str] = field(default_factory=list)
    # Both UNet weight versions (with and without the turbo LoRA), swapped in place per job;
    # None when the LoRA is not on this worker (`turbo_problem` says why) or cannot be swapped.
    recipe_weights: RecipeWeights | None = None
    turbo_problem: str = ""
    schedulers: dict[str, Any] = field(default_factory=dict)  # recipe -> its scheduler instance

    @property
    def compiled(self) -> bool:
        return any(option.startswith("compile(") for option in self.performance_options)

    @property
    def face_projection(self) -> Any:
        return self.pipe.unet.encoder_hid_proj.image_projection_layers[0]


# ---------------------------------------------------------------------------
# The per-process cache: one loaded pipeline per worker process, kept warm

_CACHE: dict[tuple[Any, ...], LoadedPipeline] = {}
_CACHE_LOCK = threading.Lock()


def _cache_key(id_embedding_dim: int) -> tuple[Any, ...]:
    return (
        settings.TWIN_BACKEND,
        id_embedding_dim,
        settings.TWIN_PERF_PRESET,
        str(settings.TWIN_MODELS_DIR),
        settings.TWIN_BASE_MODEL,
        settings.TWIN_IP_ADAPTER,
        settings.TWIN_IP_ADAPTER_WEIGHT,
        settings.TWIN_IMAGE_ENCODER,
        settings.TWIN_DEVICE,
        settings.TWIN_TORCH_DTYPE,
    )


def _cached_pipeline(*, id_embedding_dim: int) -> LoadedPipeline:
    key = _cache_key(id_embedding_dim)
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is None:
            # One model set per worker (a GPU holds one): free the old one before loading.
            _CACHE.clear()
            release_memory()
            loaded = load_pipeline(
                backend=settings.TWIN_BACKEND, id_embedding_dim=id_embedding_dim, preset=settings.TWIN_PERF_PRESET
            )
            _CACHE[key] = loaded
    return loaded


def run_record() -> dict[str, Any] | None:
    """What this process's loaded pipeline really is (provenance.run_record: the job's record and the
    files' provenance); None before the first load. Loads nothing."""
    from generation.pipeline.provenance import run_record as record_of

    loaded = next(iter(_CACHE.values()), None)
    return None if loaded is None else record_of(loaded)


def loaded_summary() -> dict[str, Any] | None:
    """What this process has loaded, for the worker's heartbeat; None before the first load. Loads nothing."""
    loaded = next(iter(_CACHE.values()), None)
    if loaded is None:
        return None
    return {
        "backend": loaded.backend,
        "preset": loaded.preset,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "id_embedding_dim": loaded.id_embedding_dim,
        "compiled": loaded.compiled,
        "warm_shapes": list(loaded.warm_shapes),
        "recipes": sorted(loaded.schedulers) if loaded.recipe_weights else ["default"],
        "load_seconds": round(loaded.load_seconds, 1),
    }


def release_memory() -> None:
    """After a failure: drop garbage and return cached GPU memory. Keeps the pipeline loaded."""
    for loaded in list(_CACHE.values()):
        if getattr(loaded.pipe.unet, "encoder_hid_proj", None) is not None:
            loaded.face_projection.clip_embeds = None
    gc.collect()
    torch = sys.modules.get("torch")  # never import torch just to free memory
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------
# Loading from local files


def load_pipeline(
    *,
    backend: str,
    id_embedding_dim: int,
    preset: str,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    model_dir: Path | None = None,
    compile_scope: str | None = None,
    compile_mode: str | None = None,
) -> LoadedPipeline:
    """Load base model, image encoder and FaceID Plus v2 adapter from local files only.

    backend "sdxl": settings' ids/paths, looked up under `model_dir` (default TWIN_MODELS_DIR)
    and then in the HF cache. "tiny": the random-weight folder `model_dir` (default
    TWIN_MODELS_DIR/tiny), built first if absent. "random": an existing model_builder folder
    at `model_dir` (any size). `device`/`dtype` default to settings (TWIN_DEVICE,
    TWIN_TORCH_DTYPE): CUDA with bf16 when there is a GPU, else CPU with fp32.
    `compile_scope` ("blocks" | "unet") and `compile_mode` override the preset's torch.compile
    choice (benchmarks).
    """
    if backend not in BACKENDS:
        raise PipelineError(f"unknown generation backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    if preset not in PRESETS:
        raise PipelineError(f"unknown performance preset {preset!r} (expected one of {', '.join(PRESETS)})")
    check_embedding_dim(backend=backend, dim=id_embedding_dim)
    started = time.perf_counter()
    sources = resolve_sources(backend=backend, id_embedding_dim=id_embedding_dim, model_dir=model_dir)
    torch_device = _pick_device(device)
    torch_dtype = dtype or _pick_dtype(torch_device)
    pipe = _load_components(sources, device=torch_device, dtype=torch_dtype)

    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    _check_faceid_projection(projection, sources, id_embedding_dim)
    unit_value_weights = unit_ip_value_weights(pipe)
    # Before anything is compiled or fused: the LoRA's delta goes into the plain weights.
    recipe_weights, turbo_problem = _fuse_turbo_lora(pipe, backend, sources, model_dir, RESTING_RECIPE[preset])

    options = _apply_performance_options(
        pipe, preset, torch_device, compile_scope=compile_scope, compile_mode=compile_mode
    )
    if recipe_weights is not None:
        if any(option.startswith("float8") for option in options):
            # torchao replaced the linear weights with float8 tensors: nothing to copy into.
            recipe_weights, turbo_problem = None, "TWIN_PERF_PRESET=fast quantizes the UNet; it serves default only"
        else:
            recipe_weights.follow_fused_qkv(pipe.unet)
    schedulers = {name: make_scheduler(recipe.scheduler, pipe.scheduler.config) for name, recipe in RECIPES.items()}
    loaded = LoadedPipeline(
        pipe=pipe,
        backend=backend,
        preset=preset,
        id_embedding_dim=id_embedding_dim,
        device=torch_device,
        dtype=torch_dtype,
        sources=sources,
        performance_options=options,
        load_seconds=time.perf_counter() - started,
        unit_value_weights=unit_value_weights,
        recipe_weights=recipe_weights,
        turbo_problem=turbo_problem,
        schedulers=schedulers,
    )
    logger.info(
        "loaded %s pipeline (id dim %d) on %s/%s in %.1f s; options: %s",
        backend,
        id_embedding_dim,
        torch_device,
        torch_dtype,
        loaded.load_seconds,
        ", ".join(options) or "none",
    )
    return loaded


def _fuse_turbo_lora(
    pipe: StableDiffusionXLPipeline, backend: str, sources: ModelSources, model_dir: Path | None, resting: str
) -> tuple[RecipeWeights | None, str]:
    """Fuse the turbo LoRA (both weight versions kept); without the file a default worker still serves default."""
    turbo = next(recipe for recipe in RECIPES.values() if recipe.lora)
    try:
        lora_file = resolve_turbo_lora(backend=backend, sources=sources, model_dir=model_dir)
        weights = fuse_lora_file(
            pipe, lora_file, scale=turbo.lora_scale, recipe=turbo.name, base_recipe="default", resting=resting
        )
    except ModelWeightsMissing as exc:
        if resting == turbo.name:
            raise
        logger.warning("turbo recipe unavailable on this worker: %s", exc)
        return None, str(exc)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        message = f"Could not load the turbo LoRA: {_first_line(exc)}. {_FETCH_HINT}."
        if resting == turbo.name:
            raise ModelWeightsMissing(message) from exc
        logger.warning("turbo recipe unavailable on this worker: %s", message)
        return None, message
    return weights, ""


def _pick_device(device: str | None) -> torch.device:
    import torch

    name = device or settings.TWIN_DEVICE or ("cuda" if torch.cuda.is_available() else "cpu")
    torch_device = torch.device(name)
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise PipelineError(f"TWIN_DEVICE={name!r} but this worker has no usable CUDA GPU")
    return torch_device


def _pick_dtype(device: torch.device) -> torch.dtype:
    import torch

    if device.type == "cpu":
        return torch.float32  # half precision on a CPU is slow or unsupported
    name = settings.TWIN_TORCH_DTYPE
    return torch.bfloat16 if name == "auto" else getattr(torch, name)


def _load_components(sources: ModelSources, *, device: torch.device, dtype: torch.dtype) -> StableDiffusionXLPipeline:
    import diffusers
    import torch
    import transformers
    from diffusers import StableDiffusionXLPipeline
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    # Worker logs are JSON lines: no tqdm bars for loading.
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    try:
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            sources.image_encoder_dir, dtype=dtype, local_files_only=True
        )
        image_size = image_encoder.config.image_size
        if (sources.image_encoder_dir / "preprocessor_config.json").is_file():
            feature_extractor = CLIPImageProcessor.from_pretrained(sources.image_encoder_dir, local_files_only=True)
        else:
            feature_extractor = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=image_size)
        pipe = StableDiffusionXLPipeline.from_pretrained(
            sources.base_dir,
            dtype=dtype,
            variant=_weights_variant(sources.base_dir, dtype),
            local_files_only=True,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
            add_watermarker=False,
        )
        pipe.load_ip_adapter(
            str(sources.adapter_dir),
            subfolder=None,
            weight_name=sources.adapter_weight_name,
            image_encoder_folder=None,
            local_files_only=True,
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelWeightsMissing(
            f"Could not load the generation models (base {sources.base_dir}, adapter "
            f"{sources.adapter_dir / sources.adapter_weight_name}, image encoder {sources.image_encoder_dir}): "
            f"{_first_line(exc)}. The files may be incomplete; {_FETCH_HINT}."
        ) from exc
    # SDXL ships an Euler config; the default recipe's scheduler (presets.make_scheduler) until a job picks its own.
    pipe.scheduler = make_scheduler(RECIPES["default"].scheduler, pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
    # Here, so every loader (the worker's, the benchmarks') runs the recipe: shortcut on (v2), its scale a buffer.
    install_face_structure_buffer(pipe.unet.encoder_hid_proj.image_projection_layers[0])
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.image_encoder):
        module.eval().requires_grad_(False)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return pipe


def _weights_variant(base_dir: Path, dtype: torch.dtype) -> str | None:
    """Use the fp16 files where they exist (fetch_models downloads only those) or suit the dtype."""
    import torch

    unet = base_dir / "unet"
    has_fp16 = any(unet.glob("*.fp16.safetensors")) or any(unet.glob("*.fp16.bin"))
    has_full = any(p for p in unet.glob("diffusion_pytorch_model*") if ".fp16." not in p.name)
    if has_fp16 and (not has_full or dtype in (torch.float16, torch.bfloat16)):
        return "fp16"
    return None


def _check_faceid_projection(projection: Any, sources: ModelSources, id_embedding_dim: int) -> None:
    from diffusers.models.embeddings import IPAdapterFaceIDPlusImageProjection

    weight_file = sources.adapter_dir / sources.adapter_weight_name
    if not isinstance(projection, IPAdapterFaceIDPlusImageProjection):
        raise PipelineError(f"{weight_file} is not an IP-Adapter FaceID Plus (v2) file")
    adapter_dim = projection.proj.net[0].proj.in_features
    if adapter_dim != id_embedding_dim:
        raise EmbeddingMismatch(
            f"{weight_file} takes {adapter_dim}-d face embeddings; this twin has {id_embedding_dim}-d ones"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]
