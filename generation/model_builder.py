"""Random-weight SDXL + FaceID Plus v2 model folders, in the real weights' on-disk format.

The `tiny` backend (tests, CI, a laptop) and GPU benchmarks need the generation
stack without downloading ~10 GB of weights. This module builds every component
with random weights and saves it exactly the way the real files are laid out, so
generation/pipeline.py loads it with the same code it uses for real SDXL:

    <folder>/
      base/             diffusers StableDiffusionXLPipeline folder: model_index.json, unet/,
                        vae/, text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/
      ip_adapter/       ip-adapter-faceid-plusv2_<size>_<dim>.bin, in the original IP-Adapter
                        key layout ({"image_proj": {...}, "ip_adapter": {...}}), one per id dim
      image_encoder/    CLIPVisionModelWithProjection: config.json, model.safetensors,
                        preprocessor_config.json
      twinsite-random-model.json    what was built (size, dtype, seed)

Two sizes: "tiny" (a few MB, SDXL's block types at toy widths; CPU tests) and "full"
(the published SDXL base / CLIP / FaceID Plus v2 SDXL shapes, 9.3 GB in fp16; GPU
benchmarks only). Heavy libraries are imported inside functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

ModelSize = Literal["tiny", "full"]

BASE_SUBDIR = "base"
ADAPTER_SUBDIR = "ip_adapter"
IMAGE_ENCODER_SUBDIR = "image_encoder"
MANIFEST_NAME = "twinsite-random-model.json"
MANIFEST_FORMAT = 1

# The perceiver of FaceID Plus: diffusers converts exactly 4 layers with 64-wide heads.
_PERCEIVER_DEPTH = 4
_PERCEIVER_DIM_HEAD = 64
_FACEID_NUM_TOKENS = 4


@dataclass(frozen=True)
class Architecture:
    """Constructor arguments of every component of one model size."""

    unet: dict[str, Any]
    vae: dict[str, Any]
    text_encoder: dict[str, Any]
    text_encoder_2: dict[str, Any]
    image_encoder: dict[str, Any]
    text_encoder_vocab_size: int
    scheduler: dict[str, Any] = field(default_factory=dict)


# The scheduler config SDXL base ships (EulerDiscreteScheduler); the pipeline swaps in
# DPMSolverMultistepScheduler from this config at load time, as it does for the real model.
_SDXL_SCHEDULER = {
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

FULL = Architecture(
    # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
    unet={
        "sample_size": 128,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "block_out_channels": (320, 640, 1280),
        "layers_per_block": 2,
        "transformer_layers_per_block": (1, 2, 10),
        "attention_head_dim": (5, 10, 20),
        "cross_attention_dim": 2048,
        "use_linear_projection": True,
        "norm_num_groups": 32,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
    },
    # vae/config.json (4 latent channels, 8x downsampling)
    vae={
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": (128, 256, 512, 512),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": 1024,
        "scaling_factor": 0.13025,
        "force_upcast": True,
    },
    # CLIP ViT-L/14 text tower
    text_encoder={
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "projection_dim": 768,
        "hidden_act": "quick_gelu",
        "max_position_embeddings": 77,
    },
    # OpenCLIP ViT-bigG/14 text tower, with projection
    text_encoder_2={
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 20,
        "projection_dim": 1280,
        "hidden_act": "gelu",
        "max_position_embeddings": 77,
    },
    # laion/CLIP-ViT-H-14-laion2B-s32B-b79K vision tower
    image_encoder={
        "hidden_size": 1280,
        "intermediate_size": 5120,
        "num_hidden_layers": 32,
        "num_attention_heads": 16,
        "patch_size": 14,
        "image_size": 224,
        "projection_dim": 1024,
        "hidden_act": "gelu",
    },
    text_encoder_vocab_size=49408,
    scheduler=_SDXL_SCHEDULER,
)

TINY = Architecture(
    # Same block types, transformer depths that differ per level, text_time conditioning;
    # projection_class_embeddings_input_dim = 6 * addition_time_embed_dim + text_encoder_2 projection.
    unet={
        "sample_size": 8,
        "in_channels": 4,
        "out_channels": 4,
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        "block_out_channels": (16, 32, 32),
        "layers_per_block": 1,
        "transformer_layers_per_block": (1, 1, 2),
        "attention_head_dim": (1, 2, 2),
        "cross_attention_dim": 64,
        "use_linear_projection": True,
        "norm_num_groups": 8,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 6 * 8 + 32,
    },
    vae={
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": (8, 8, 16, 16),
        "down_block_types": ("DownEncoderBlock2D",) * 4,
        "up_block_types": ("UpDecoderBlock2D",) * 4,
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "sample_size": 64,
        "scaling_factor": 0.13025,
        "force_upcast": True,
    },
    text_encoder={
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "projection_dim": 32,
        "hidden_act": "quick_gelu",
        "max_position_embeddings": 77,
    },
    text_encoder_2={
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "projection_dim": 32,
        "hidden_act": "gelu",
        "max_position_embeddings": 77,
    },
    image_encoder={
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 2,
        "patch_size": 8,
        "image_size": 32,
        "projection_dim": 16,
        "hidden_act": "gelu",
    },
    text_encoder_vocab_size=1000,
    scheduler=_SDXL_SCHEDULER,
)

ARCHITECTURES: dict[str, Architecture] = {"tiny": TINY, "full": FULL}


@dataclass(frozen=True)
class RandomModelFolder:
    """Where the pieces of a built folder are: what pipeline.py's loader needs."""

    root: Path
    size: ModelSize
    id_embedding_dim: int

    @property
    def base_dir(self) -> Path:
        return self.root / BASE_SUBDIR

    @property
    def adapter_dir(self) -> Path:
        return self.root / ADAPTER_SUBDIR

    @property
    def adapter_weight_name(self) -> str:
        return adapter_weight_name(self.size, self.id_embedding_dim)

    @property
    def image_encoder_dir(self) -> Path:
        return self.root / IMAGE_ENCODER_SUBDIR


def adapter_weight_name(size: str, id_embedding_dim: int) -> str:
    return f"ip-adapter-faceid-plusv2_{size}_{id_embedding_dim}.bin"


def read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(root) / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def is_complete(root: Path) -> bool:
    """True when `root` holds a finished build (the manifest is written last)."""
    root = Path(root)
    manifest = read_manifest(root)
    return (
        manifest is not None
        and manifest.get("format") == MANIFEST_FORMAT
        and (root / BASE_SUBDIR / "model_index.json").is_file()
        and (root / IMAGE_ENCODER_SUBDIR / "config.json").is_file()
    )


# ---------------------------------------------------------------------------
# Building


def build_random_pipeline_folder(
    path: Path | str,
    *,
    size: ModelSize,
    id_embedding_dim: int,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> RandomModelFolder:
    """Build every component with random weights and save it under `path` (see the module doc).

    `dtype` defaults to float32 for "tiny" and float16 for "full"; full size is saved as
    safetensors with the "fp16" variant, as stabilityai/stable-diffusion-xl-base-1.0 is.
    `device="cuda"` makes the random initialisation of the full model fast (28-36 s to build
    and save it on an H100 host). The folder is written in place: use
    `ensure_random_pipeline_folder` for an atomic, shared build.
    """
    import torch

    if size not in ARCHITECTURES:
        raise ValueError(f"size must be one of {', '.join(ARCHITECTURES)}, got {size!r}")
    if id_embedding_dim < 1:
        raise ValueError(f"id_embedding_dim must be positive, got {id_embedding_dim}")
    arch = ARCHITECTURES[size]
    if dtype is None:
        dtype = torch.float32 if size == "tiny" else torch.float16
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    _quiet_progress_bars()

    unet = _build_base(root / BASE_SUBDIR, arch, size=size, dtype=dtype, device=device, seed=seed)
    _build_image_encoder(root / IMAGE_ENCODER_SUBDIR, arch, size=size, dtype=dtype, device=device, seed=seed + 1)
    write_faceid_adapter(
        root / ADAPTER_SUBDIR / adapter_weight_name(size, id_embedding_dim),
        unet=unet,
        clip_embeddings_dim=arch.image_encoder["hidden_size"],
        id_embedding_dim=id_embedding_dim,
        dtype=dtype,
        seed=seed + 2,
    )
    manifest = {
        "format": MANIFEST_FORMAT,
        "size": size,
        "dtype": str(dtype).removeprefix("torch."),
        "seed": seed,
        "note": "random weights: SDXL + FaceID Plus v2 architecture, for tests and benchmarks only",
    }
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
    return RandomModelFolder(root=root, size=size, id_embedding_dim=id_embedding_dim)


def _quiet_progress_bars() -> None:
    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()


def ensure_random_pipeline_folder(
    path: Path | str, *, size: ModelSize = "tiny", id_embedding_dim: int
) -> RandomModelFolder:
    """The folder at `path`, built once if absent, plus the adapter file for `id_embedding_dim`.

    Safe with several processes: a file lock serialises builders, each build happens in a
    temporary sibling folder that is renamed into place, and adapter files are written to a
    temporary name and renamed, so no reader ever sees a half-written model.
    """
    root = Path(path)
    if is_complete(root):
        folder = _folder(root, id_embedding_dim)
        if (folder.adapter_dir / folder.adapter_weight_name).is_file():
            return folder
    root.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(root.parent / f".{root.name}.lock"):
        if not is_complete(root):
            tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            try:
                build_random_pipeline_folder(tmp, size=size, id_embedding_dim=id_embedding_dim)
                if root.exists():
                    # An incomplete leftover (a build killed mid-rename, a manual copy): replace it.
                    shutil.rmtree(root)
                tmp.rename(root)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        folder = _folder(root, id_embedding_dim)
        adapter = folder.adapter_dir / folder.adapter_weight_name
        if not adapter.is_file():
            write_faceid_adapter_for_folder(root, id_embedding_dim=id_embedding_dim)
    return folder


def write_faceid_adapter_for_folder(root: Path | str, *, id_embedding_dim: int) -> Path:
    """Add the adapter file for another id-embedding size to a built folder (atomically)."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel

    root = Path(root)
    manifest = read_manifest(root) or {}
    size = manifest.get("size", "tiny")
    dtype = getattr(torch, manifest.get("dtype", "float32"))
    config = UNet2DConditionModel.load_config(root / BASE_SUBDIR / "unet")
    # Only the processor names and widths are needed: build the UNet on the meta device.
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(config)
    encoder_config = json.loads((root / IMAGE_ENCODER_SUBDIR / "config.json").read_text())
    target = root / ADAPTER_SUBDIR / adapter_weight_name(size, id_embedding_dim)
    write_faceid_adapter(
        target,
        unet=unet,
        clip_embeddings_dim=encoder_config.get("hidden_size") or encoder_config["vision_config"]["hidden_size"],
        id_embedding_dim=id_embedding_dim,
        dtype=dtype,
        seed=int(manifest.get("seed", 0)) + 2 + id_embedding_dim,
    )
    return target


def _folder(root: Path, id_embedding_dim: int) -> RandomModelFolder:
    manifest = read_manifest(root) or {}
    return RandomModelFolder(root=root, size=manifest.get("size", "tiny"), id_embedding_dim=id_embedding_dim)


@contextlib.contextmanager
def _file_lock(lock_path: Path) -> Iterator[None]:
    from filelock import FileLock

    with FileLock(str(lock_path), timeout=30 * 60):
        yield


def _build_base(target: Path, arch: Architecture, *, size: str, dtype: torch.dtype, device: str, seed: int) -> Any:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    # Tokenizers are written in the original vocab.json/merges.txt format (what SDXL's repo
    # holds; transformers 5 would save tokenizer.json instead), then copied in after saving.
    tokenizer_src = target.parent / f".{target.name}-tokenizers-{uuid.uuid4().hex[:8]}"
    try:
        # SDXL's second tokenizer pads with "!" (OpenCLIP's convention).
        tokenizer = _write_tokenizer(tokenizer_src / "tokenizer", pad_token="<|endoftext|>")
        tokenizer_2 = _write_tokenizer(tokenizer_src / "tokenizer_2", pad_token="!")
        special = {
            "vocab_size": arch.text_encoder_vocab_size,
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": 1,
            "layer_norm_eps": 1e-5,
        }
        if len(tokenizer) > arch.text_encoder_vocab_size:
            raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, more than the text encoders' vocabulary")
        torch.manual_seed(seed)
        with torch.device(device):
            unet = UNet2DConditionModel(**arch.unet)
            vae = AutoencoderKL(**arch.vae)
            text_encoder = CLIPTextModel(CLIPTextConfig(**arch.text_encoder, **special))
            text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**arch.text_encoder_2, **special))
        for module in (unet, vae, text_encoder, text_encoder_2):
            module.eval().requires_grad_(False)
            if dtype != torch.float32:
                module.to(dtype)
        pipe = StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=text_encoder,
            text_encoder_2=text_encoder_2,
            tokenizer=tokenizer,
            tokenizer_2=tokenizer_2,
            unet=unet,
            scheduler=EulerDiscreteScheduler.from_config(arch.scheduler),
            add_watermarker=False,
        )
        variant = "fp16" if dtype == torch.float16 and size == "full" else None
        pipe.save_pretrained(target, safe_serialization=True, variant=variant)
        for name in ("tokenizer", "tokenizer_2"):
            shutil.rmtree(target / name)
            shutil.copytree(tokenizer_src / name, target / name)
            _check_tokenizer_loads(target / name, CLIPTokenizer)
    finally:
        shutil.rmtree(tokenizer_src, ignore_errors=True)
    return unet


def _build_image_encoder(
    target: Path, arch: Architecture, *, size: str, dtype: torch.dtype, device: str, seed: int
) -> None:
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    with torch.device(device):
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(**arch.image_encoder, layer_norm_eps=1e-5))
    encoder.eval().requires_grad_(False)
    if dtype != torch.float32:
        encoder.to(dtype)
    encoder.save_pretrained(target, safe_serialization=True)
    image_size = arch.image_encoder["image_size"]
    CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size=image_size).save_pretrained(target)


# ---------------------------------------------------------------------------
# Tokenizers: a byte-level CLIP BPE vocabulary, written offline


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes), strict=True))


# A few merges so the BPE path runs, not just single characters.
_MERGES = ["t h", "th e</w>", "o n", "a n", "i n", "e r", "p h", "o t", "e n", "a r"]


def _write_tokenizer(target: Path, *, pad_token: str) -> Any:
    """Write vocab.json, merges.txt, special_tokens_map.json and tokenizer_config.json as in SDXL's repo."""
    from transformers import CLIPTokenizer

    target.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars]
    for merge in _MERGES:
        merged = merge.replace(" ", "")
        if merged not in tokens:
            tokens.append(merged)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    (target / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(tokens)}, ensure_ascii=False))
    (target / "merges.txt").write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }
    (target / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    config = {
        **special,
        "add_prefix_space": False,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        "tokenizer_class": "CLIPTokenizer",
    }
    (target / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return CLIPTokenizer.from_pretrained(target)


def _check_tokenizer_loads(folder: Path, tokenizer_class: Any) -> None:
    tokenizer = tokenizer_class.from_pretrained(folder)
    ids = tokenizer("a photo of the person").input_ids
    if ids[0] != tokenizer.bos_token_id or ids[-1] != tokenizer.eos_token_id:
        raise RuntimeError(f"tokenizer written to {folder} does not round-trip")


# ---------------------------------------------------------------------------
# FaceID Plus v2 weights in the original IP-Adapter layout


def write_faceid_adapter(
    target: Path,
    *,
    unet: Any,
    clip_embeddings_dim: int,
    id_embedding_dim: int,
    dtype: torch.dtype,
    seed: int,
) -> Path:
    """Save a random FaceID Plus v2 adapter for `unet` to `target` (.bin, or .safetensors), atomically."""
    import torch

    state = faceid_plus_v2_state_dict(
        unet=unet, clip_embeddings_dim=clip_embeddings_dim, id_embedding_dim=id_embedding_dim, seed=seed
    )
    state = {part: {k: v.to(dtype).contiguous() for k, v in tensors.items()} for part, tensors in state.items()}
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if target.suffix == ".safetensors":
            from safetensors.torch import save_file

            flat = {f"{part}.{k}": v for part, tensors in state.items() for k, v in tensors.items()}
            save_file(flat, tmp_name)
        else:
            torch.save(state, tmp_name)
        os.replace(tmp_name, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
    return target


def faceid_plus_v2_state_dict(
    *, unet: Any, clip_embeddings_dim: int, id_embedding_dim: int, seed: int = 0
) -> dict[str, dict[str, torch.Tensor]]:
    """Random weights with the keys of h94/IP-Adapter-FaceID's ip-adapter-faceid-plusv2_*.bin.

    image_proj: ProjPlusModel (proj.0/proj.2/norm + a depth-4 FacePerceiverResampler with
    64-wide heads); ip_adapter: `{k}.to_k_ip.weight` / `{k}.to_v_ip.weight` for k = 1, 3, 5, …
    over the cross-attention processors in `unet.attn_processors` order (the original
    numbers every processor and keeps the odd, cross-attention ones).
    """
    import torch

    cross_attention_dim = unet.config.cross_attention_dim
    generator = torch.Generator().manual_seed(seed)
    image_proj = _ProjPlusModel.create(
        cross_attention_dim=cross_attention_dim,
        id_embeddings_dim=id_embedding_dim,
        clip_embeddings_dim=clip_embeddings_dim,
    )
    _reinitialise(image_proj, generator)

    ip_adapter: dict[str, torch.Tensor] = {}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        hidden_size = _processor_hidden_size(unet.config, name)
        std = 1.0 / (cross_attention_dim**0.5)
        for kind in ("to_k_ip", "to_v_ip"):
            weight = torch.randn(hidden_size, cross_attention_dim, generator=generator) * std
            ip_adapter[f"{key_id}.{kind}.weight"] = weight
        key_id += 2
    return {"image_proj": dict(image_proj.state_dict()), "ip_adapter": ip_adapter}


def _processor_hidden_size(config: Any, name: str) -> int:
    channels = list(config.block_out_channels)
    if name.startswith("mid_block"):
        return channels[-1]
    if name.startswith("up_blocks"):
        return list(reversed(channels))[int(name.split(".")[1])]
    if name.startswith("down_blocks"):
        return channels[int(name.split(".")[1])]
    raise ValueError(f"unexpected attention processor {name!r}")


def _reinitialise(module: Any, generator: torch.Generator) -> None:
    """Deterministic, well-scaled random init (LayerNorms at identity)."""
    import torch

    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, torch.nn.LayerNorm):
                sub.weight.fill_(1.0)
                sub.bias.zero_()
            elif isinstance(sub, torch.nn.Linear):
                sub.weight.copy_(torch.randn(sub.weight.shape, generator=generator) / sub.in_features**0.5)
                if sub.bias is not None:
                    sub.bias.zero_()


class _ProjPlusModel:
    """The original IP-Adapter FaceID Plus modules, built only to get their state-dict layout."""

    @staticmethod
    def create(*, cross_attention_dim: int, id_embeddings_dim: int, clip_embeddings_dim: int) -> Any:
        from torch import nn

        class PerceiverAttention(nn.Module):
            def __init__(self, dim: int, dim_head: int, heads: int) -> None:
                super().__init__()
                inner = dim_head * heads
                self.norm1 = nn.LayerNorm(dim)
                self.norm2 = nn.LayerNorm(dim)
                self.to_q = nn.Linear(dim, inner, bias=False)
                self.to_kv = nn.Linear(dim, inner * 2, bias=False)
                self.to_out = nn.Linear(inner, dim, bias=False)

        def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
            inner = int(dim * mult)
            return nn.Sequential(
                nn.LayerNorm(dim), nn.Linear(dim, inner, bias=False), nn.GELU(), nn.Linear(inner, dim, bias=False)
            )

        class FacePerceiverResampler(nn.Module):
            def __init__(self, *, dim: int, depth: int, dim_head: int, heads: int, embedding_dim: int, output_dim: int):
                super().__init__()
                self.proj_in = nn.Linear(embedding_dim, dim)
                self.proj_out = nn.Linear(dim, output_dim)
                self.norm_out = nn.LayerNorm(output_dim)
                self.layers = nn.ModuleList(
                    nn.ModuleList([PerceiverAttention(dim, dim_head, heads), feed_forward(dim)]) for _ in range(depth)
                )

        class ProjPlusModel(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.cross_attention_dim = cross_attention_dim
                self.num_tokens = _FACEID_NUM_TOKENS
                self.proj = nn.Sequential(
                    nn.Linear(id_embeddings_dim, id_embeddings_dim * 2),
                    nn.GELU(),
                    nn.Linear(id_embeddings_dim * 2, cross_attention_dim * _FACEID_NUM_TOKENS),
                )
                self.norm = nn.LayerNorm(cross_attention_dim)
                self.perceiver_resampler = FacePerceiverResampler(
                    dim=cross_attention_dim,
                    depth=_PERCEIVER_DEPTH,
                    dim_head=_PERCEIVER_DIM_HEAD,
                    heads=max(1, cross_attention_dim // _PERCEIVER_DIM_HEAD),
                    embedding_dim=clip_embeddings_dim,
                    output_dim=cross_attention_dim,
                )

        if cross_attention_dim % _PERCEIVER_DIM_HEAD:
            raise ValueError(
                f"FaceID Plus needs a cross-attention width that is a multiple of {_PERCEIVER_DIM_HEAD}, "
                f"got {cross_attention_dim}"
            )
        return ProjPlusModel()
