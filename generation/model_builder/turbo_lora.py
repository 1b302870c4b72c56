"""A random-weight distilled-LoRA file in the key layout of the published SDXL few-step LoRAs.

ByteDance's SDXL-Lightning and Hyper-SD LoRAs are kohya-style files: for each UNet layer
`lora_unet_<module path, dots as underscores>` with `.lora_down.weight` (rank x in),
`.lora_up.weight` (out x rank) and a scalar `.alpha`. diffusers' `load_lora_weights` converts
that layout (`_convert_non_diffusers_lora_to_diffusers`), so the tiny and full-size random
models get a file of the same layout, and the worker loads it through the same code as the real one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

TURBO_LORA_SUBDIR = "turbo_lora"
TURBO_LORA_NAME = "turbo-lora.safetensors"
# The attention and feed-forward linears of every transformer block (what the published files cover,
# besides resnet convolutions; a fused LoRA costs nothing per step, so its coverage only sets load time).
_TARGETS = (
    ".attn1.to_q",
    ".attn1.to_k",
    ".attn1.to_v",
    ".attn1.to_out.0",
    ".attn2.to_q",
    ".attn2.to_k",
    ".attn2.to_v",
    ".attn2.to_out.0",
    ".ff.net.0.proj",
    ".ff.net.2",
)


def turbo_lora_state_dict(unet: Any, *, rank: int, alpha: float, dtype: Any, seed: int = 5) -> dict[str, Any]:
    """kohya keys for `unet`'s transformer linears, small random factors (the delta is ~1% of a weight)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}
    for name, module in unet.named_modules():
        if not isinstance(module, torch.nn.Linear) or not name.endswith(_TARGETS) or ".processor" in name:
            continue
        key = "lora_unet_" + name.replace(".", "_")
        r = min(rank, module.in_features, module.out_features)
        down = torch.randn(r, module.in_features, generator=generator) / module.in_features**0.5
        up = torch.randn(module.out_features, r, generator=generator) * 0.02
        state[f"{key}.lora_down.weight"] = down.to(dtype)
        state[f"{key}.lora_up.weight"] = up.to(dtype)
        state[f"{key}.alpha"] = torch.tensor(float(alpha), dtype=dtype)
    return state


def ensure_turbo_lora(root: Path | str) -> Path:
    """TWIN_MODELS_DIR-style `<root>/turbo_lora/turbo-lora.safetensors` for a built random folder, written once."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    from generation.model_builder.manifest import BASE_SUBDIR, read_manifest

    root = Path(root)
    target = root / TURBO_LORA_SUBDIR / TURBO_LORA_NAME
    if target.is_file():
        return target
    manifest = read_manifest(root) or {}
    full = manifest.get("size") == "full"
    with init_empty_weights():  # only the layer names and widths are needed
        unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(root / BASE_SUBDIR / "unet"))
    # The published 8-step files are rank 64 with alpha 8 (Lightning) in fp16.
    state = turbo_lora_state_dict(unet, rank=64 if full else 4, alpha=8.0 if full else 2.0, dtype=torch.float16)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    save_file(state, str(tmp))
    tmp.replace(target)
    return target
