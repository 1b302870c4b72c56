"""How the twin's identity enters the UNet besides its ArcFace embedding.

The identity strength lives in the IP-Adapter value projections and the face-structure weight
(FaceID Plus v2's `s_scale`, diffusers' `shortcut_scale`) in a 0-d tensor buffer of the face
projection: both data, not Python floats, so a compiled UNet needs no recompile for a new value
and its CUDA graphs read the new value in place. The twin's reference face goes through the CLIP
image encoder into the projection's `clip_embeds` (the "plus" path); a twin without one fails
the job (MissingReferenceFace) rather than running on a stand-in image.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from diffusers import StableDiffusionXLPipeline
    from PIL import Image

    from generation.pipeline.loading import LoadedPipeline

from generation.pipeline.errors import MISSING_REFERENCE_FACE_MESSAGE, MissingReferenceFace

logger = logging.getLogger(__name__)

NEUTRAL_FACE_SIZE = 224
# h94/IP-Adapter-FaceID's FaceID-Plus v2 SDXL demo: generate(..., shortcut=v2, s_scale=1.0).
FACE_STRUCTURE_DEFAULT = 1.0


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


def install_face_structure_buffer(projection: Any) -> None:
    """Turn on the v2 shortcut and hold its scale in a 0-d float32 buffer instead of diffusers' Python float.

    `out = id_embeds + shortcut_scale * out` (IPAdapterFaceIDPlusImageProjection.forward): a float
    attribute is a constant to torch.compile (a guard on its value, so a new value recompiles, and
    the number is baked into the CUDA graph); a buffer is an input the graph reads, so
    `_set_face_structure` can change it in place. A 0-d float32 tensor keeps `out`'s dtype.
    """
    import torch

    device = next(projection.parameters()).device
    projection.shortcut = True  # FaceID Plus v2
    if "shortcut_scale" not in projection._buffers:
        del projection.shortcut_scale
        projection.register_buffer(
            "shortcut_scale", torch.tensor(FACE_STRUCTURE_DEFAULT, dtype=torch.float32, device=device), persistent=False
        )


def _set_face_structure(loaded: LoadedPipeline, weight: float) -> None:
    """Write the face-structure weight into the projection's shortcut_scale buffer, in place."""
    import torch

    buffer = loaded.face_projection.shortcut_scale
    with torch.no_grad():
        buffer.fill_(float(weight))


def warm_up_face() -> Image.Image:
    """A flat grey face-sized image for warm_up only (it compiles shapes; no user sees its images)."""
    from PIL import Image

    return Image.new("RGB", (NEUTRAL_FACE_SIZE, NEUTRAL_FACE_SIZE), (128, 128, 128))


def _required_reference_face(face: Image.Image | None) -> Image.Image:
    """The twin's reference face crop in RGB; never a stand-in (that would silently turn Plus into plain FaceID)."""
    if face is None:
        raise MissingReferenceFace(MISSING_REFERENCE_FACE_MESSAGE)
    return face.convert("RGB")
