"""Where the three weight sets (base SDXL, FaceID Plus v2 adapter, CLIP image encoder) live on this worker.

For `sdxl` this reads settings, the file system and the local Hugging Face cache only (no ML
library), so `manage.py check_models` and the worker's heartbeat can ask it too; the `tiny`
folder is built here on first use. Nothing is ever downloaded: a missing set is
ModelWeightsMissing naming `manage.py fetch_models`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from generation.pipeline.errors import EmbeddingMismatch, ModelWeightsMissing

BACKENDS = ("tiny", "sdxl", "random")
# h94/IP-Adapter-FaceID's SDXL adapters were trained on insightface buffalo_l (ArcFace) embeddings.
SDXL_ID_EMBEDDING_DIM = 512
TINY_FOLDER_NAME = "tiny"
_FETCH_HINT = "run `manage.py fetch_models` on this worker"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSources:
    """Resolved local locations of the three weight sets, and how settings named them."""

    base_dir: Path
    adapter_dir: Path
    adapter_weight_name: str
    image_encoder_dir: Path
    labels: dict[str, str] = field(default_factory=dict)


def check_embedding_dim(*, backend: str, dim: int, embedding_model: str = "") -> None:
    """SDXL FaceID Plus v2 takes 512-d buffalo_l embeddings; the tiny adapter is built for any size."""
    if backend == "sdxl" and dim != SDXL_ID_EMBEDDING_DIM:
        source = f" from {embedding_model}" if embedding_model else ""
        raise EmbeddingMismatch(
            f"FaceID Plus v2 needs {SDXL_ID_EMBEDDING_DIM}-d buffalo_l embeddings; this twin has {dim}-d{source}. "
            "Enroll the twin again with INSIGHTFACE_PACK=buffalo_l."
        )


def resolve_sources(*, backend: str, id_embedding_dim: int, model_dir: Path | None = None) -> ModelSources:
    """Where each weight set lives on this machine, or ModelWeightsMissing naming what to do."""
    from generation import model_builder

    if backend == "sdxl":
        models_dir = Path(model_dir or settings.TWIN_MODELS_DIR)
        base = _resolve_folder("TWIN_BASE_MODEL", settings.TWIN_BASE_MODEL, "model_index.json", models_dir)
        weight = settings.TWIN_IP_ADAPTER_WEIGHT
        adapter = _resolve_folder("TWIN_IP_ADAPTER", settings.TWIN_IP_ADAPTER, weight, models_dir)
        encoder = _resolve_folder("TWIN_IMAGE_ENCODER", settings.TWIN_IMAGE_ENCODER, "config.json", models_dir)
        labels = _configured_labels("sdxl")
        labels.update(base_model_path=str(base), image_encoder_path=str(encoder))
        return ModelSources(base, adapter, weight, encoder, labels)

    if backend == "tiny":
        root = Path(model_dir or Path(settings.TWIN_MODELS_DIR) / TINY_FOLDER_NAME)
        folder = model_builder.ensure_random_pipeline_folder(root, size="tiny", id_embedding_dim=id_embedding_dim)
    else:  # "random": a folder someone built, e.g. the full-size benchmark model
        if model_dir is None or not model_builder.is_complete(Path(model_dir)):
            raise ModelWeightsMissing(
                f"Random-weight model folder not found at {model_dir}; build it with "
                "generation.model_builder.build_random_pipeline_folder()"
            )
        manifest = model_builder.read_manifest(Path(model_dir)) or {}
        folder = model_builder.ensure_random_pipeline_folder(
            Path(model_dir), size=manifest.get("size", "tiny"), id_embedding_dim=id_embedding_dim
        )
    labels = {
        "base_model": f"{folder.base_dir} (random weights, {folder.size})",
        "ip_adapter": str(folder.adapter_dir / folder.adapter_weight_name),
        "image_encoder": str(folder.image_encoder_dir),
    }
    return ModelSources(
        folder.base_dir, folder.adapter_dir, folder.adapter_weight_name, folder.image_encoder_dir, labels
    )


def resolve_turbo_lora(*, backend: str, sources: ModelSources, model_dir: Path | None = None) -> Path:
    """The turbo recipe's LoRA file: TWIN_TURBO_LORA for sdxl, a random one of the same layout beside tiny/random."""
    from generation import model_builder

    if backend == "sdxl":
        weight = settings.TWIN_TURBO_LORA_WEIGHT
        models_dir = Path(model_dir or settings.TWIN_MODELS_DIR)
        return _resolve_folder("TWIN_TURBO_LORA", settings.TWIN_TURBO_LORA, weight, models_dir) / weight
    return model_builder.ensure_turbo_lora(sources.base_dir.parent)


def _configured_labels(backend: str) -> dict[str, str]:
    if backend == "tiny":
        root = Path(settings.TWIN_MODELS_DIR) / TINY_FOLDER_NAME
        return {
            "base_model": f"{root} (random weights, tiny)",
            "ip_adapter": str(root / "ip_adapter"),
            "image_encoder": str(root / "image_encoder"),
        }
    return {
        "base_model": settings.TWIN_BASE_MODEL,
        "ip_adapter": f"{settings.TWIN_IP_ADAPTER}/{settings.TWIN_IP_ADAPTER_WEIGHT}",
        "image_encoder": settings.TWIN_IMAGE_ENCODER,
    }


def _resolve_folder(setting: str, value: str, marker: str, models_dir: Path) -> Path:
    """A local folder holding `marker`: the setting as a path, TWIN_MODELS_DIR/<id>, or the HF cache."""
    path = Path(value).expanduser()
    local = path if path.is_absolute() else models_dir / path
    if (local / marker).is_file():
        return local
    if _REPO_ID.match(value) and not path.is_absolute():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(value, marker)
        if isinstance(cached, str):
            return Path(cached).parent
        where = f"{local / marker} (and not in the Hugging Face cache)"
    else:
        where = str(local / marker)
    raise ModelWeightsMissing(f"Model weights not found at {where} for {setting}={value!r}; {_FETCH_HINT}.")
