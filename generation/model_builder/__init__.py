"""Random-weight SDXL + FaceID Plus v2 model folders, in the real weights' on-disk format.

The `tiny` backend (tests, CI, a laptop) and GPU benchmarks need the generation
stack without downloading ~10 GB of weights. This package builds every component
with random weights and saves it exactly the way the real files are laid out, so
generation/pipeline/ loads it with the same code it uses for real SDXL:

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

Modules: `configs` (the two architectures), `manifest` (folder layout, is a build finished),
`builder` (writing a folder), `tokenizers` and `faceid_adapter` (the pieces it writes).
"""

from __future__ import annotations

from generation.model_builder.builder import (
    build_random_pipeline_folder,
    ensure_random_pipeline_folder,
    write_faceid_adapter_for_folder,
)
from generation.model_builder.configs import ARCHITECTURES, FULL, TINY, Architecture, ModelSize
from generation.model_builder.faceid_adapter import faceid_plus_v2_state_dict, write_faceid_adapter
from generation.model_builder.manifest import (
    ADAPTER_SUBDIR,
    BASE_SUBDIR,
    IMAGE_ENCODER_SUBDIR,
    MANIFEST_FORMAT,
    MANIFEST_NAME,
    RandomModelFolder,
    adapter_weight_name,
    is_complete,
    read_manifest,
)
from generation.model_builder.turbo_lora import TURBO_LORA_NAME, TURBO_LORA_SUBDIR, ensure_turbo_lora

__all__ = [
    "ADAPTER_SUBDIR",
    "ARCHITECTURES",
    "BASE_SUBDIR",
    "FULL",
    "IMAGE_ENCODER_SUBDIR",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "TINY",
    "TURBO_LORA_NAME",
    "TURBO_LORA_SUBDIR",
    "Architecture",
    "ModelSize",
    "RandomModelFolder",
    "adapter_weight_name",
    "build_random_pipeline_folder",
    "ensure_random_pipeline_folder",
    "ensure_turbo_lora",
    "faceid_plus_v2_state_dict",
    "is_complete",
    "read_manifest",
    "write_faceid_adapter",
    "write_faceid_adapter_for_folder",
]
