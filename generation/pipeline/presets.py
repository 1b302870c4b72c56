"""Performance presets: what a loaded pipeline is tuned with, and which batch shapes a compiled UNet serves.

CUDA only; each step is a separate function so a benchmark can pick. On a CPU (tests, CI)
the pipeline stays eager fp32.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionXLPipeline

logger = logging.getLogger(__name__)

# What a worker loads (TWIN_PERF_PRESET): its tuning, and the recipe its weights rest in.
PRESETS = ("default", "turbo", "fast", "eager")


@dataclass(frozen=True)
class Recipe:
    """What a job's quality/speed choice (GenerationJob.preset) means: scheduler, steps, guidance, LoRA.

    Data, not branches: run_pipeline reads these fields. `steps`/`guidance` None means the
    job's own values; a distilled LoRA fixes them.
    """

    name: str
    scheduler: str  # a key of SCHEDULERS
    steps: int | None = None
    guidance: float | None = None
    lora: str | None = None  # "turbo": the TWIN_TURBO_LORA file, fused into the UNet weights
    lora_scale: float = 1.0


# Hyper-SD's 8-step CFG-preserving LoRA (ByteDance/Hyper-SD, openrail++): it keeps classifier-free
# guidance (the card recommends 5-8) and so negative prompts, and it keeps the UNet's batch shape
# (2 x images) of `default`, so the same compiled CUDA graphs serve both recipes: a worker swaps
# weights in place (weights.py), never recompiles. SDXL-Lightning (guidance ~1, no negative
# branch) would halve each step but needs its own compiled shapes and drops negative prompts.
RECIPES: dict[str, Recipe] = {
    "default": Recipe("default", scheduler="dpmsolver++-karras"),
    "turbo": Recipe("turbo", scheduler="ddim-trailing", steps=8, guidance=5.0, lora="turbo"),
}
JOB_PRESETS = tuple(RECIPES)
# The recipe a worker's UNet weights hold at load (and return to after nothing; see weights.py).
RESTING_RECIPE = {"default": "default", "turbo": "turbo", "fast": "default", "eager": "default"}


def make_scheduler(name: str, config: Any) -> Any:
    """A fresh scheduler of the named kind from the base model's scheduler config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

    if name == "dpmsolver++-karras":
        # DPM-Solver++ (2M, Karras sigmas) gives good faces in ~25-30 steps.
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++", use_karras_sigmas=True)
    if name == "ddim-trailing":  # what the Hyper-SD card pairs with its CFG LoRAs
        # SDXL base's own DDIM settings, stated: a config that passed through another scheduler may lack them.
        return DDIMScheduler.from_config(
            config, timestep_spacing="trailing", clip_sample=False, set_alpha_to_one=False, steps_offset=1
        )
    if name == "euler-trailing":  # SDXL-Lightning's card
        return EulerDiscreteScheduler.from_config(config, timestep_spacing="trailing")
    raise ValueError(f"unknown scheduler {name!r}")


# ---------------------------------------------------------------------------
# Performance options

# (scope, mode) of torch.compile per preset; see _apply_performance_options for the measurements.
COMPILE_BY_PRESET: dict[str, tuple[str, str | None]] = {
    "default": ("unet", "reduce-overhead"),
    "turbo": ("unet", "reduce-overhead"),
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
    if compiles(preset, device.type):
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
# The batch shapes a compiled UNet serves


def call_size() -> int:
    """Images per pipeline call (TWIN_MAX_BATCH_IMAGES): the one number that warm_up compiles a shape for,
    run_pipeline splits by, and the job runner plans its calls and its progress with."""
    return max(1, int(settings.TWIN_MAX_BATCH_IMAGES))


def compiles(preset: str, device_type: str) -> bool:
    """Whether `_apply_performance_options` compiles the UNet for this preset on this kind of device."""
    return device_type == "cuda" and preset != "eager"


def pipeline_calls(seeds: list[int], *, compiled: bool) -> list[list[int]]:
    """The seeds of each pipeline call a request makes (see _chunks), at `call_size()`."""
    return _chunks(list(seeds), batch=call_size(), compiled=compiled)


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
