"""SDXL + IP-Adapter FaceID Plus v2: the generation adapter (worker only).

The only module that drives diffusers. torch, diffusers and transformers are imported
inside functions, so the web process can import this module (for its exceptions and
`ImageRequest`) without loading them.

Backends (settings.TWIN_BACKEND):
- `sdxl`: real weights. TWIN_BASE_MODEL, TWIN_IP_ADAPTER (+ TWIN_IP_ADAPTER_WEIGHT) and
  TWIN_IMAGE_ENCODER are each a local folder (absolute, or relative to TWIN_MODELS_DIR), a
  Hugging Face id downloaded by `manage.py fetch_models` into TWIN_MODELS_DIR/<id>, or a
  Hugging Face id already in the local HF cache. Nothing is ever downloaded here.
- `tiny`: random weights with SDXL's architecture at toy widths, built once into
  TWIN_MODELS_DIR/tiny by generation/model_builder.py in the same folder format, and then
  loaded by the same code as `sdxl`.
`load_pipeline(backend="random", model_dir=...)` loads any folder that model_builder built,
such as the full-size random SDXL a GPU benchmark uses.

Identity: the twin's ArcFace embedding goes in as `ip_adapter_image_embeds` (zeros as the
negative half for classifier-free guidance); the twin's reference face crop goes through the
CLIP image encoder into the projection's `clip_embeds` ("plus" path, shortcut on for v2).
The identity strength scales the adapter's value projections (see _set_identity_strength).
"""

from __future__ import annotations

import gc
import logging
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    import numpy as np
    import torch
    from diffusers import StableDiffusionXLPipeline
    from PIL import Image

logger = logging.getLogger(__name__)

BACKENDS = ("tiny", "sdxl", "random")
PRESETS = ("default", "fast", "eager")
# h94/IP-Adapter-FaceID's SDXL adapters were trained on insightface buffalo_l (ArcFace) embeddings.
SDXL_ID_EMBEDDING_DIM = 512
TINY_FOLDER_NAME = "tiny"
NEUTRAL_FACE_SIZE = 224
_FETCH_HINT = "run `manage.py fetch_models` on this worker"


class GenerationCancelled(Exception):
    """Raised by an on_step callback to stop a generation; propagates out of generate_images."""


class PipelineError(RuntimeError):
    """A generation failure with a message fit to show to the user or support staff."""


class ModelWeightsMissing(PipelineError):
    pass


class EmbeddingMismatch(PipelineError):
    pass


@dataclass(frozen=True)
class ImageRequest:
    prompt: str
    negative_prompt: str
    seeds: list[int]
    steps: int
    guidance: float
    identity_strength: float
    id_embedding: np.ndarray  # float32, L2-normalised, shape (dim,)
    reference_face: Image.Image | None
    width: int
    height: int
    # The face model that produced id_embedding (Twin.embedding_model); only named in errors.
    embedding_model: str = ""


@dataclass(frozen=True)
class ModelSources:
    """Resolved local locations of the three weight sets, and how settings named them."""

    base_dir: Path
    adapter_dir: Path
    adapter_weight_name: str
    image_encoder_dir: Path
    labels: dict[str, str] = field(default_factory=dict)


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

    @property
    def compiled(self) -> bool:
        return any(option.startswith("compile(") for option in self.performance_options)

    @property
    def face_projection(self) -> Any:
        return self.pipe.unet.encoder_hid_proj.image_projection_layers[0]


# ---------------------------------------------------------------------------
# Public entry points (the worker's services call these)


def generate_images(*, request: ImageRequest, on_step: Callable[[int, int], None] | None = None) -> list[Image.Image]:
    """One image per seed, from the pipeline kept warm in this process."""
    dim = _embedding_dim(request.id_embedding)
    check_embedding_dim(backend=settings.TWIN_BACKEND, dim=dim, embedding_model=request.embedding_model)
    loaded = _cached_pipeline(id_embedding_dim=dim)
    return run_pipeline(loaded, request, on_step)


def backend_versions() -> dict[str, str]:
    """What a job was generated with; recorded on the job. Does not load anything."""
    loaded = next(iter(_CACHE.values()), None)
    backend = settings.TWIN_BACKEND
    versions = {"backend": backend}
    if loaded is not None and loaded.backend == backend:
        versions.update(loaded.sources.labels)
        versions.update(
            device=str(loaded.device),
            dtype=str(loaded.dtype).removeprefix("torch."),
            performance=",".join(loaded.performance_options) or "none",
        )
    else:
        versions.update(_configured_labels(backend))
        versions.update(device=settings.TWIN_DEVICE or "auto", dtype=settings.TWIN_TORCH_DTYPE)
    versions["preset"] = settings.TWIN_PERF_PRESET
    versions["scheduler"] = "DPMSolverMultistepScheduler"
    for package in ("diffusers", "torch", "transformers"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


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
        # The two batch shapes run_pipeline uses on a compiled UNet (one image, a full batch):
        # each compiles once here (or loads from the compile cache), never during a job.
        for count, strength in ((1, 0.8), (min(4, settings.TWIN_MAX_BATCH_IMAGES), 0.7)):
            request = ImageRequest(
                prompt="a portrait photo of a person",
                negative_prompt="",
                seeds=list(range(count)),
                steps=2,
                guidance=5.0,
                identity_strength=strength,
                id_embedding=embedding,
                reference_face=None,
                width=size,
                height=size,
            )
            run_pipeline(loaded, request)
            loaded.warm_shapes.append(f"{count}x{size}x{size}")
        if loaded.compiled:
            import torch

            # A job the warm graph cannot serve runs eager for that call rather than stalling
            # its user for a multi-minute recompile.
            torch.compiler.set_stance("eager_on_recompile")
    logger.info("generation pipeline warm in %.1f s (%s)", time.perf_counter() - started, loaded.backend)


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


def default_image_size() -> int:
    if settings.TWIN_BACKEND == "tiny":
        return settings.TWIN_TINY_IMAGE_SIZE
    return settings.TWIN_IMAGE_SIZE


def check_embedding_dim(*, backend: str, dim: int, embedding_model: str = "") -> None:
    """SDXL FaceID Plus v2 takes 512-d buffalo_l embeddings; the tiny adapter is built for any size."""
    if backend == "sdxl" and dim != SDXL_ID_EMBEDDING_DIM:
        source = f" from {embedding_model}" if embedding_model else ""
        raise EmbeddingMismatch(
            f"FaceID Plus v2 needs {SDXL_ID_EMBEDDING_DIM}-d buffalo_l embeddings; this twin has {dim}-d{source}. "
            "Enroll the twin again with INSIGHTFACE_PACK=buffalo_l."
        )


# ---------------------------------------------------------------------------
# The per-process cache

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


# ---------------------------------------------------------------------------
# Loading


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
    projection.shortcut = True  # FaceID Plus v2
    projection.shortcut_scale = 1.0
    unit_value_weights = unit_ip_value_weights(pipe)

    options = _apply_performance_options(
        pipe, preset, torch_device, compile_scope=compile_scope, compile_mode=compile_mode
    )
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


def resolve_sources(*, backend: str, id_embedding_dim: int, model_dir: Path | None = None) -> ModelSources:
    """Where each weight set lives on this machine, or ModelWeightsMissing naming what to do."""
    from generation import model_builder

    if backend == "sdxl":
        models_dir = Path(model_dir or settings.TWIN_MODELS_DIR)
        base = _resolve_folder("TWIN_BASE_MODEL", settings.TWIN_BASE_MODEL, "model_index.json", models_dir)
        weight = settings.TWIN_IP_ADAPTER_WEIGHT
        adapter = _resolve_folder("TWIN_IP_ADAPTER", settings.TWIN_IP_ADAPTER, weight, models_dir)
        encoder = _resolve_folder("TWIN_IMAGE_ENCODER", settings.TWIN_IMAGE_ENCODER, "config.json", models_dir)
        labels = _configured_labels("sdxl")
        labels.update(base_model_path=str(base), image_encoder_path=str(encoder))
        return ModelSources(base, adapter, weight, encoder, labels)

    if backend == "tiny":
        root = Path(model_dir or Path(settings.TWIN_MODELS_DIR) / TINY_FOLDER_NAME)
        folder = model_builder.ensure_random_pipeline_folder(root, size="tiny", id_embedding_dim=id_embedding_dim)
    else:  # "random": a folder someone built, e.g. the full-size benchmark model
        if model_dir is None or not model_builder.is_complete(Path(model_dir)):
            raise ModelWeightsMissing(
                f"Random-weight model folder not found at {model_dir}; build it with "
                "generation.model_builder.build_random_pipeline_folder()"
            )
        manifest = model_builder.read_manifest(Path(model_dir)) or {}
        folder = model_builder.ensure_random_pipeline_folder(
            Path(model_dir), size=manifest.get("size", "tiny"), id_embedding_dim=id_embedding_dim
        )
    labels = {
        "base_model": f"{folder.base_dir} (random weights, {folder.size})",
        "ip_adapter": str(folder.adapter_dir / folder.adapter_weight_name),
        "image_encoder": str(folder.image_encoder_dir),
    }
    return ModelSources(
        folder.base_dir, folder.adapter_dir, folder.adapter_weight_name, folder.image_encoder_dir, labels
    )


def _configured_labels(backend: str) -> dict[str, str]:
    if backend == "tiny":
        root = Path(settings.TWIN_MODELS_DIR) / TINY_FOLDER_NAME
        return {
            "base_model": f"{root} (random weights, tiny)",
            "ip_adapter": str(root / "ip_adapter"),
            "image_encoder": str(root / "image_encoder"),
        }
    return {
        "base_model": settings.TWIN_BASE_MODEL,
        "ip_adapter": f"{settings.TWIN_IP_ADAPTER}/{settings.TWIN_IP_ADAPTER_WEIGHT}",
        "image_encoder": settings.TWIN_IMAGE_ENCODER,
    }


_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _resolve_folder(setting: str, value: str, marker: str, models_dir: Path) -> Path:
    """A local folder holding `marker`: the setting as a path, TWIN_MODELS_DIR/<id>, or the HF cache."""
    path = Path(value).expanduser()
    local = path if path.is_absolute() else models_dir / path
    if (local / marker).is_file():
        return local
    if _REPO_ID.match(value) and not path.is_absolute():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(value, marker)
        if isinstance(cached, str):
            return Path(cached).parent
        where = f"{local / marker} (and not in the Hugging Face cache)"
    else:
        where = str(local / marker)
    raise ModelWeightsMissing(f"Model weights not found at {where} for {setting}={value!r}; {_FETCH_HINT}.")


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
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionXLPipeline
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
    # SDXL ships an Euler config; DPM-Solver++ (2M, Karras sigmas) gives good faces in ~25-30 steps.
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config, algorithm_type="dpmsolver++", use_karras_sigmas=True
    )
    pipe.set_progress_bar_config(disable=True)
    pipe.to(device)
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


# ---------------------------------------------------------------------------
# Performance options (CUDA only; each step separate so a benchmark can pick)


# (scope, mode) of torch.compile per preset; see _apply_performance_options for the measurements.
COMPILE_BY_PRESET: dict[str, tuple[str, str | None]] = {
    "default": ("unet", "reduce-overhead"),
    "fast": ("unet", "reduce-overhead"),
}


def _apply_performance_options(
    pipe: StableDiffusionXLPipeline,
    preset: str,
    device: torch.device,
    *,
    compile_scope: str | None = None,
    compile_mode: str | None = None,
) -> list[str]:
    """TF32, fused QKV, channels_last, float8 ("fast"), torch.compile (not "eager"); bf16 is chosen at load.

    The figures behind each choice are in benchmarks/results/ and the README's Performance
    section (full-size random-weight SDXL + FaceID Plus v2, 1024², 30 steps, through this module).
    - The whole UNet is compiled with static shapes and CUDA graphs (eager SDXL is CPU-bound
      on an H100: 2,850 kernel launches per step). Regional compile (only the transformer
      blocks) compiled faster but stayed launch-bound; dynamic shapes did not finish
      compiling in 8 minutes. The two batch shapes are compiled once at worker start
      (warm_up) and cached on disk; the identity strength lives in weights, not in the
      graph (_set_identity_strength), so no job recompiles.
    - float8 ("fast") trades exactness for speed, so it is opt-in (its difference to bf16 is
      not measured yet).
    """
    if device.type != "cuda":
        return []  # CPU (tests, CI): eager fp32; none of these pay off there
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    options = ["tf32"]
    options += fuse_self_attention_qkv(pipe.unet)
    pipe.vae.fuse_qkv_projections()
    options.append("fused-qkv-vae")
    # A channels_last VAE decodes slower on H100 (shared/bench): only the UNet. The VAE stays
    # in the pipeline dtype (bf16 needs no fp32 upcast) and without slicing or tiling.
    pipe.unet.to(memory_format=torch.channels_last)
    options.append("channels-last-unet")
    if preset == "fast":
        options += apply_float8(pipe.unet)
    if preset != "eager":
        scope, mode = COMPILE_BY_PRESET[preset]
        options += compile_unet(pipe.unet, mode=compile_mode or mode, scope=compile_scope or scope)
    return options


def fuse_self_attention_qkv(unet: Any) -> list[str]:
    """Fuse Q/K/V of the UNet's self-attention layers only.

    diffusers' `fuse_qkv_projections()` sets FusedAttnProcessor2_0 on every layer, which
    would replace the IP-Adapter processors on the cross-attention layers and silently drop
    the identity; self-attention (attn1) is where fusing pays (one GEMM instead of three).
    """
    from diffusers.models.attention_processor import AttnProcessor2_0, FusedAttnProcessor2_0

    processors = dict(unet.attn_processors)
    fused = 0
    for name, module in unet.named_modules():
        key = f"{name}.processor"
        if name.endswith(".attn1") and isinstance(processors.get(key), AttnProcessor2_0):
            module.fuse_projections(fuse=True)
            processors[key] = FusedAttnProcessor2_0()
            fused += 1
    unet.set_attn_processor(processors)
    return [f"fused-qkv-self-attention({fused})"] if fused else []


def apply_float8(unet: Any) -> list[str]:
    """float8 weights and activations for the big UNet linears via torchao (Hopper/Ada), if installed."""
    import torch

    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except ImportError:
        logger.info("TWIN_PERF_PRESET=fast: torchao is not installed; skipping float8")
        return []
    if torch.cuda.get_device_capability() < (8, 9):
        logger.info("TWIN_PERF_PRESET=fast: this GPU has no float8 tensor cores; skipping float8")
        return []

    def big_transformer_linear(module: torch.nn.Module, name: str) -> bool:
        return (
            isinstance(module, torch.nn.Linear)
            and ".transformer_blocks." in name
            and ".processor." not in name  # IP-Adapter projections: 16 tokens, and rescaled per job
            and module.in_features % 16 == 0
            and module.out_features % 16 == 0
            and min(module.in_features, module.out_features) >= 512
        )

    quantize_(unet, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=big_transformer_linear)
    return ["float8-linears(torchao)"]


def compile_unet(unet: Any, *, mode: str | None = None, scope: str = "unet") -> list[str]:
    """torch.compile the UNet in place.

    scope "unet": the whole forward, one static graph per batch shape (run_pipeline uses two),
    which lets mode="reduce-overhead" replay each step as one CUDA graph. scope "blocks"
    (regional): only the repeated transformer blocks, which share one compiled graph;
    compiles faster, runs slower (the rest of the UNet stays eager).
    """
    import torch._inductor.config as inductor_config

    inductor_config.conv_1x1_as_mm = True
    if mode and mode.startswith("max-autotune"):
        inductor_config.coordinate_descent_tuning = True
        inductor_config.epilogue_fusion = False
    _use_persistent_compile_cache()
    kwargs: dict[str, Any] = {}
    if mode:
        kwargs["mode"] = mode
    if scope == "blocks":
        if mode == "reduce-overhead":
            # Measured: the 70 blocks share one CUDA graph, whose output the next block overwrites.
            raise ValueError("regional compile cannot use mode='reduce-overhead'; compile the whole UNet for that")
        unet.compile_repeated_blocks(fullgraph=True, **kwargs)
    elif scope == "unet":
        unet.compile(dynamic=False, **kwargs)
    else:
        raise ValueError(f"compile scope must be 'blocks' or 'unet', got {scope!r}")
    return [f"compile({'transformer-blocks' if scope == 'blocks' else 'unet'}, {mode or 'default'})"]


def _use_persistent_compile_cache() -> None:
    """Keep inductor's cache beside the models, so a restarted worker compiles from cache."""
    import os

    cache_dir = Path(settings.TWIN_MODELS_DIR) / "torch-compile-cache"
    cache_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir))


# ---------------------------------------------------------------------------
# Running


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
    chunks = _chunks(seeds, batch=max(1, settings.TWIN_MAX_BATCH_IMAGES), compiled=loaded.compiled)
    total = request.steps * len(chunks)
    done = 0
    use_cfg = request.guidance > 1.0  # the pipeline skips the negative branch at guidance <= 1
    face = _reference_face(request.reference_face)

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
        _set_identity_strength(loaded, request.identity_strength)
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


def _chunks(seeds: list[int], *, batch: int, compiled: bool) -> list[list[int]]:
    """Seeds per pipeline call: full batches, then the rest.

    A compiled UNet has one static graph per batch shape (a graph with dynamic shapes had not
    finished compiling after 8 minutes), warmed for one image and for a full batch; so there the rest
    runs one image per call instead of in a third, uncompiled shape.
    """
    full = len(seeds) - len(seeds) % batch
    chunks = [seeds[i : i + batch] for i in range(0, full, batch)]
    rest = seeds[full:]
    if compiled:
        return chunks + [[seed] for seed in rest]
    return chunks + ([rest] if rest else [])


def _ip_value_projections(pipe: StableDiffusionXLPipeline) -> list[Any]:
    return [
        layer
        for processor in pipe.unet.attn_processors.values()
        for layer in getattr(processor, "to_v_ip", ())
    ]


def unit_ip_value_weights(pipe: StableDiffusionXLPipeline) -> list[Any]:
    """Fix the adapter scale at 1 and keep the value projections it has at strength 1."""
    pipe.set_ip_adapter_scale(1.0)
    return [layer.weight.detach().clone() for layer in _ip_value_projections(pipe)]


def _set_identity_strength(loaded: LoadedPipeline, strength: float) -> None:
    """Scale the IP-Adapter value projections by the identity strength (the adapter scale stays 1).

    Attention is linear in its values, so scale · attn(q, k, v) == attn(q, k, scale · v):
    the image is the one set_ip_adapter_scale(strength) gives. Unlike that Python float, the
    weights are data to a compiled UNet, so a new strength needs no recompile, and its CUDA
    graphs read the new values in place.
    """
    import torch

    strength = float(strength)
    if loaded.identity_strength == strength:
        return
    with torch.no_grad():
        for layer, unit in zip(_ip_value_projections(loaded.pipe), loaded.unit_value_weights, strict=True):
            torch.mul(unit, strength, out=layer.weight.data)
    loaded.identity_strength = strength


def _clip_embeds(loaded: LoadedPipeline, face: Image.Image, *, count: int, use_cfg: bool) -> torch.Tensor:
    """(2·count, 1, tokens, dim) penultimate CLIP hidden states of the face, negative (zero image) half first."""
    (embeds,) = loaded.pipe.prepare_ip_adapter_image_embeds(
        ip_adapter_image=[face],
        ip_adapter_image_embeds=None,
        device=loaded.device,
        num_images_per_prompt=count,
        do_classifier_free_guidance=use_cfg,
    )
    return embeds.to(dtype=loaded.dtype)


def _reference_face(face: Image.Image | None) -> Image.Image:
    from PIL import Image

    if face is None:
        # Twins enrolled before reference crops existed: the FaceID embedding still carries the
        # identity; a flat grey image gives the "plus" path a neutral input instead of failing.
        logger.warning("generation without a reference face: using a neutral grey image for the CLIP path")
        return Image.new("RGB", (NEUTRAL_FACE_SIZE, NEUTRAL_FACE_SIZE), (128, 128, 128))
    return face.convert("RGB")


def _embedding_dim(embedding: Any) -> int:
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
    for name, value in (("width", request.width), ("height", request.height)):
        if value < 8 or value % 8:
            problems.append(f"{name} must be a positive multiple of 8, got {value}")
    if problems:
        raise ValueError("; ".join(problems))
