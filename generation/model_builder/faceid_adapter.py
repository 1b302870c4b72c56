"""Random FaceID Plus v2 adapter weights in the original IP-Adapter key layout.

What diffusers' `load_ip_adapter` converts: an `image_proj` (ProjPlusModel) and an
`ip_adapter` part with the IP key/value projections of every cross-attention processor.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# The perceiver of FaceID Plus: diffusers converts exactly 4 layers with 64-wide heads.
_PERCEIVER_DEPTH = 4
_PERCEIVER_DIM_HEAD = 64
_FACEID_NUM_TOKENS = 4


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
