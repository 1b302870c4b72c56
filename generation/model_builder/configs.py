"""The architectures of the random-weight model folders: published SDXL shapes ("full") and toy widths ("tiny").

Plain data (constructor arguments of every component), so reading it loads no ML library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

ModelSize = Literal["tiny", "full"]


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

# What both sizes share, so "tiny" differs from SDXL in widths and depths only.
_SDXL_UNET_LAYOUT = {
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
}
# 4 latent channels, 8x downsampling
_SDXL_VAE_LAYOUT = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}

FULL = Architecture(
    # stabilityai/stable-diffusion-xl-base-1.0 unet/config.json
    unet={
        **_SDXL_UNET_LAYOUT,
        "sample_size": 128,
        "block_out_channels": (320, 640, 1280),
        "layers_per_block": 2,
        "transformer_layers_per_block": (1, 2, 10),
        "attention_head_dim": (5, 10, 20),
        "cross_attention_dim": 2048,
        "norm_num_groups": 32,
        "addition_time_embed_dim": 256,
        "projection_class_embeddings_input_dim": 2816,
    },
    # vae/config.json
    vae={
        **_SDXL_VAE_LAYOUT,
        "block_out_channels": (128, 256, 512, 512),
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "sample_size": 1024,
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

# The two tiny CLIP text towers differ only in their activation, as SDXL's do.
_TINY_TEXT_TOWER = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "projection_dim": 32,
    "max_position_embeddings": 77,
}

TINY = Architecture(
    # Same block types, transformer depths that differ per level, text_time conditioning;
    # projection_class_embeddings_input_dim = 6 * addition_time_embed_dim + text_encoder_2 projection.
    unet={
        **_SDXL_UNET_LAYOUT,
        "sample_size": 8,
        "block_out_channels": (16, 32, 32),
        "layers_per_block": 1,
        "transformer_layers_per_block": (1, 1, 2),
        "attention_head_dim": (1, 2, 2),
        "cross_attention_dim": 64,
        "norm_num_groups": 8,
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": 6 * 8 + 32,
    },
    vae={
        **_SDXL_VAE_LAYOUT,
        "block_out_channels": (8, 8, 16, 16),
        "layers_per_block": 1,
        "norm_num_groups": 4,
        "sample_size": 64,
    },
    text_encoder={**_TINY_TEXT_TOWER, "hidden_act": "quick_gelu"},
    text_encoder_2={**_TINY_TEXT_TOWER, "hidden_act": "gelu"},
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
