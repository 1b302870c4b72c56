"""SDXL + IP-Adapter FaceID Plus v2: the generation adapter (worker only).

The only package that drives diffusers. torch, diffusers and transformers are imported
inside functions, so the web process can import it (for its exceptions and `ImageRequest`)
without loading them.

Backends (settings.TWIN_BACKEND):
- `sdxl`: real weights. TWIN_BASE_MODEL, TWIN_IP_ADAPTER (+ TWIN_IP_ADAPTER_WEIGHT) and
  TWIN_IMAGE_ENCODER are each a local folder (absolute, or relative to TWIN_MODELS_DIR), a
  Hugging Face id downloaded by `manage.py fetch_models` into TWIN_MODELS_DIR/<id>, or a
  Hugging Face id already in the local HF cache. Nothing is ever downloaded here.
- `tiny`: random weights with SDXL's architecture at toy widths, built once into
  TWIN_MODELS_DIR/tiny by the generation/model_builder package in the same folder format,
  and then loaded by the same code as `sdxl`.
`load_pipeline(backend="random", model_dir=...)` loads any folder that model_builder built,
such as the full-size random SDXL a GPU benchmark uses.

Identity: the twin's ArcFace embedding goes in as `ip_adapter_image_embeds` (zeros as the
negative half for classifier-free guidance); the twin's reference face crop goes through the
CLIP image encoder into the projection's `clip_embeds` ("plus" path, shortcut on for v2).
The identity strength scales the adapter's value projections (see _set_identity_strength); the
face-structure weight (s_scale) is a tensor buffer on the projection (_set_face_structure). A twin
without a reference face fails its job (MissingReferenceFace). What ran is `run_record()`
(provenance.py).

Modules, each importing only those before it: `errors`; `sources` (where the weights are);
`presets` (performance options, compiled batch shapes); `identity` (strength as value
weights, the reference face's CLIP embeds); `loading` (load, the per-process cache, what is
loaded); `run` (requests, generate_images, warm_up). Callers use this package's names:
`pipeline.generate_images(...)`, so a test can patch it here.
"""

from __future__ import annotations

# Names with a leading underscore are internals that tests, benchmarks and `manage.py check_models`
# reach into, re-exported explicitly ("x as x"). Each is the module's own object: `_CACHE` is the
# dict the loader fills, not a copy.
from generation.pipeline.errors import (
    MISSING_REFERENCE_FACE_MESSAGE,
    EmbeddingMismatch,
    GenerationCancelled,
    MissingReferenceFace,
    ModelWeightsMissing,
    PipelineError,
)
from generation.pipeline.identity import FACE_STRUCTURE_DEFAULT, NEUTRAL_FACE_SIZE, unit_ip_value_weights
from generation.pipeline.identity import _clip_embeds as _clip_embeds
from generation.pipeline.identity import _set_identity_strength as _set_identity_strength
from generation.pipeline.loading import _CACHE as _CACHE
from generation.pipeline.loading import LoadedPipeline, load_pipeline, loaded_summary, release_memory, run_record
from generation.pipeline.loading import _cached_pipeline as _cached_pipeline
from generation.pipeline.loading import _load_components as _load_components
from generation.pipeline.presets import (
    COMPILE_BY_PRESET,
    PRESETS,
    apply_float8,
    call_size,
    compile_unet,
    fuse_self_attention_qkv,
    pipeline_calls,
)
from generation.pipeline.presets import _chunks as _chunks
from generation.pipeline.run import (
    ImageRequest,
    default_image_size,
    generate_images,
    plan_calls,
    run_pipeline,
    warm_batch_counts,
    warm_up,
)
from generation.pipeline.sources import (
    BACKENDS,
    SDXL_ID_EMBEDDING_DIM,
    TINY_FOLDER_NAME,
    ModelSources,
    check_embedding_dim,
    resolve_sources,
)
from generation.pipeline.sources import _resolve_folder as _resolve_folder

__all__ = [
    "BACKENDS",
    "COMPILE_BY_PRESET",
    "FACE_STRUCTURE_DEFAULT",
    "MISSING_REFERENCE_FACE_MESSAGE",
    "NEUTRAL_FACE_SIZE",
    "PRESETS",
    "SDXL_ID_EMBEDDING_DIM",
    "TINY_FOLDER_NAME",
    "EmbeddingMismatch",
    "GenerationCancelled",
    "ImageRequest",
    "LoadedPipeline",
    "MissingReferenceFace",
    "ModelSources",
    "ModelWeightsMissing",
    "PipelineError",
    "apply_float8",
    "call_size",
    "check_embedding_dim",
    "compile_unet",
    "default_image_size",
    "fuse_self_attention_qkv",
    "generate_images",
    "load_pipeline",
    "loaded_summary",
    "pipeline_calls",
    "plan_calls",
    "release_memory",
    "resolve_sources",
    "run_pipeline",
    "run_record",
    "unit_ip_value_weights",
    "warm_batch_counts",
    "warm_up",
]
