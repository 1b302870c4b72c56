"""How the twin's identity enters the UNet besides its ArcFace embedding.

The identity strength lives in the IP-Adapter value projections (data, not a Python float, so
a compiled UNet needs no recompile for a new strength), and the twin's reference face goes
through the CLIP image encoder into the projection's `clip_embeds` (the "plus" path).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionXLPipeline
    from PIL import Image

    from generation.pipeline.loading import LoadedPipeline

logger = logging.getLogger(__name__)

NEUTRAL_FACE_SIZE = 224


def _ip_value_projections(pipe: StableDiffusionXLPipeline) -> list[Any]:
    return [layer for processor in pipe.unet.attn_processors.values() for layer in getattr(processor, "to_v_ip", ())]


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


def _reference_face_or_grey(face: Image.Image | None) -> Image.Image:
    """The twin's reference face crop in RGB, or a neutral grey image for a twin without one."""
    from PIL import Image

    if face is None:
        # Twins enrolled before reference crops existed: the FaceID embedding still carries the
        # identity; a flat grey image gives the "plus" path a neutral input instead of failing.
        logger.warning("generation without a reference face: using a neutral grey image for the CLIP path")
        return Image.new("RGB", (NEUTRAL_FACE_SIZE, NEUTRAL_FACE_SIZE), (128, 128, 128))
    return face.convert("RGB")
