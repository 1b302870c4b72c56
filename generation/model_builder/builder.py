"""Writing a random-weight model folder: every component built and saved as the real weights are.

`build_random_pipeline_folder` writes in place; `ensure_random_pipeline_folder` is the
atomic, shared build that tests and the `tiny` backend use. Heavy libraries are imported
inside functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from generation.model_builder.configs import ARCHITECTURES, Architecture, ModelSize
from generation.model_builder.faceid_adapter import write_faceid_adapter
from generation.model_builder.manifest import (
    ADAPTER_SUBDIR,
    BASE_SUBDIR,
    IMAGE_ENCODER_SUBDIR,
    RandomModelFolder,
    adapter_weight_name,
    folder_at,
    is_complete,
    read_manifest,
    write_manifest,
)
from generation.model_builder.tokenizers import check_tokenizer_loads, write_tokenizer

if TYPE_CHECKING:
    import torch


def build_random_pipeline_folder(
    path: Path | str,
    *,
    size: ModelSize,
    id_embedding_dim: int,
    dtype: torch.dtype | None = None,
    device: str = "cpu",
    seed: int = 0,
) -> RandomModelFolder:
    """Build every component with random weights and save it under `path` (see the package doc).

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
    write_manifest(root, size=size, dtype=str(dtype).removeprefix("torch."), seed=seed)
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
        folder = folder_at(root, id_embedding_dim)
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
        folder = folder_at(root, id_embedding_dim)
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
        tokenizer = write_tokenizer(tokenizer_src / "tokenizer", pad_token="<|endoftext|>")
        tokenizer_2 = write_tokenizer(tokenizer_src / "tokenizer_2", pad_token="!")
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
            check_tokenizer_loads(target / name, CLIPTokenizer)
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
