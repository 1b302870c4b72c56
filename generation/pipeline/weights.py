"""The UNet's weights per recipe: the distilled turbo LoRA fused in, or not, swapped in place.

A worker keeps one pipeline and one set of compiled graphs. The turbo LoRA is loaded through
diffusers (`load_lora_weights` + `fuse_lora` + `unload_lora_weights`) once at load, before
anything is compiled, so a turbo step costs what a default step costs. Both versions of every
parameter the LoRA changed are then kept in host memory, and a job whose recipe differs from
what the UNet holds copies the other version into the same GPU tensors: exact (no unfuse drift),
no extra GPU memory, and the CUDA graphs read the new values in place, as they do for the
identity strength (identity.py). The price is one host-to-device copy of the changed weights
when consecutive jobs differ in recipe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionXLPipeline

logger = logging.getLogger(__name__)

TURBO_ADAPTER = "turbo"


@dataclass
class RecipeWeights:
    """The UNet parameters a LoRA changed, and their values per recipe (host memory)."""

    params: dict[str, Any]  # parameter name -> the live parameter
    values: dict[str, dict[str, torch.Tensor]]  # recipe -> parameter name -> host copy
    active: str
    switches: int = 0
    names: list[str] = field(default_factory=list)

    def use(self, recipe: str) -> bool:
        """Put `recipe`'s values into the live parameters; True when anything was copied."""
        import torch

        if recipe == self.active:
            return False
        if recipe not in self.values:
            raise KeyError(recipe)
        with torch.no_grad():
            for name, param in self.params.items():
                param.data.copy_(self.values[recipe][name], non_blocking=True)
        if any(p.is_cuda for p in self.params.values()):
            torch.cuda.synchronize()
        self.active = recipe
        self.switches += 1
        return True

    def follow_fused_qkv(self, unet: Any) -> None:
        """After fuse_self_attention_qkv: the live to_qkv weights replace to_q/to_k/to_v (no longer used)."""
        import torch

        for module_name, module in unet.named_modules():
            qkv = getattr(module, "to_qkv", None)
            if qkv is None or not getattr(module, "fused_projections", False):
                continue
            parts = [f"{module_name}.{p}.weight" for p in ("to_q", "to_k", "to_v")]
            if not any(name in self.params for name in parts):
                continue
            for values in self.values.values():
                pieces = [values.get(name, self._host(unet, name)) for name in parts]
                values[f"{module_name}.to_qkv.weight"] = _host_copy(torch.cat(pieces))
                for name in parts:
                    values.pop(name, None)
            for name in parts:
                self.params.pop(name, None)
            self.params[f"{module_name}.to_qkv.weight"] = qkv.weight

    @staticmethod
    def _host(unet: Any, name: str) -> torch.Tensor:
        return unet.get_parameter(name).detach().cpu()


def fuse_lora_file(
    pipe: StableDiffusionXLPipeline, lora_file: Path, *, scale: float, recipe: str, base_recipe: str, resting: str
) -> RecipeWeights:
    """Fuse a kohya/diffusers SDXL LoRA into the UNet through diffusers; keep both weight versions.

    The UNet ends in `resting`'s version (the worker preset's recipe).
    """
    import torch

    unet = pipe.unet
    before = {name: param.detach().to("cpu", copy=True) for name, param in unet.named_parameters()}
    pipe.load_lora_weights(
        str(lora_file.parent), weight_name=lora_file.name, adapter_name=TURBO_ADAPTER, local_files_only=True
    )
    pipe.fuse_lora(components=["unet"], lora_scale=scale, adapter_names=[TURBO_ADAPTER])
    pipe.unload_lora_weights()  # keeps the fused weights, drops the LoRA layers: plain Linears to compile
    params: dict[str, Any] = {}
    base_values: dict[str, torch.Tensor] = {}
    fused_values: dict[str, torch.Tensor] = {}
    for name, param in unet.named_parameters():
        now = param.detach().cpu()
        if name in before and not torch.equal(now, before[name]):
            params[name] = param
            base_values[name] = _host_copy(before[name])
            fused_values[name] = _host_copy(now)
    del before
    if not params:
        raise ValueError(f"{lora_file} changed no UNet weight: not an SDXL UNet LoRA")
    weights = RecipeWeights(params=params, values={base_recipe: base_values, recipe: fused_values}, active=recipe)
    weights.use(resting)
    logger.info("fused %s into %d UNet weights (%s resting)", lora_file.name, len(params), resting)
    return weights


def _host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """Pinned where CUDA is there, so a recipe switch copies at full bus speed."""
    import torch

    # A copy even on a CPU, where .cpu() would return the live parameter's own storage.
    tensor = tensor.detach().to("cpu", copy=True).contiguous()
    return tensor.pin_memory() if torch.cuda.is_available() else tensor
