"""What a generation really ran with: one record for the job (GenerationJob.model_versions) and for
the provenance metadata a later feature writes into each file.

Everything is read from what this worker loaded, not from the settings that named it: the
scheduler class and config from the pipeline object, the model ids and revisions from the loaded
folders (model_index.json / config.json, the Hugging Face snapshot or download metadata, the
random-weight manifest), the preset, compiled or eager, dtype and device from the load, and the
versions of the libraries from this process. `run_record` needs a loaded pipeline: the job runner
writes it after the first pipeline call, so a cold worker records what it just loaded.
"""

from __future__ import annotations

import json
import math
import re
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from generation.pipeline.loading import LoadedPipeline

RECORD_FORMAT = 1
_PACKAGES = ("torch", "diffusers", "transformers", "onnxruntime")
_SNAPSHOT = re.compile(r"/models--(?P<org>[^/]+?)--(?P<name>[^/]+)/snapshots/(?P<rev>[0-9a-f]{40})(?:/|$)")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


def run_record(loaded: LoadedPipeline) -> dict[str, Any]:
    """The record of one loaded pipeline; JSON-safe."""
    from generation import model_builder

    pipe = loaded.pipe
    sources = loaded.sources
    scheduler = pipe.scheduler
    record: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "backend": loaded.backend,
        "preset": loaded.preset,
        "compiled": loaded.compiled,
        "performance": ",".join(loaded.performance_options) or "none",
        "dtype": str(loaded.dtype).removeprefix("torch."),
        "device": str(loaded.device),
        "scheduler": type(scheduler).__name__,
        "scheduler_config": _json_safe(dict(scheduler.config)),
        "face_structure_shortcut": bool(getattr(loaded.face_projection, "shortcut", False)),
        # The recipe whose UNet weights ran last (presets.RECIPES; turbo swaps in its fused LoRA weights).
        "recipe": loaded.recipe_weights.active if loaded.recipe_weights is not None else "default",
        "models": {
            "base_model": folder_record(sources.base_dir, "model_index.json"),
            "ip_adapter": {
                **folder_record(sources.adapter_dir, sources.adapter_weight_name),
                "weight_name": sources.adapter_weight_name,
            },
            "image_encoder": folder_record(sources.image_encoder_dir, "config.json"),
        },
    }
    if loaded.recipe_weights is not None:
        from django.conf import settings

        from generation.pipeline.presets import RECIPES

        lora = next(recipe for recipe in RECIPES.values() if recipe.lora)
        record["lora"] = {
            "recipe": lora.name,
            "file": f"{settings.TWIN_TURBO_LORA}/{settings.TWIN_TURBO_LORA_WEIGHT}",
            "scale": lora.lora_scale,
            "fused_weights": len(loaded.recipe_weights.params),
        }
    manifest = _random_weights_manifest(sources.base_dir, model_builder)
    if manifest is not None:
        record["random_weights"] = manifest
    record.update(library_versions())
    return record


def library_versions() -> dict[str, str]:
    versions = {}
    for package in _PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            try:  # the GPU build of onnxruntime is its own distribution
                versions[package] = metadata.version(f"{package}-gpu")
            except metadata.PackageNotFoundError:
                versions[package] = "not installed"
    return versions


def folder_record(folder: Path, marker: str) -> dict[str, Any]:
    """Where a weight set was loaded from and what it says it is: `path`, `name_or_path` and the
    library version that wrote its config, and `repo_id`/`revision` when the folder tells them."""
    folder = Path(folder)
    record: dict[str, Any] = {"path": str(folder)}
    config = _read_json(folder / marker) if marker.endswith(".json") else None
    if config:
        for key in ("_name_or_path", "_class_name", "_diffusers_version", "transformers_version"):
            if config.get(key):
                record[key.lstrip("_")] = config[key]
    snapshot = _SNAPSHOT.search(folder.resolve().as_posix() + "/")
    if snapshot:  # a Hugging Face cache snapshot: models--org--name/snapshots/<commit>
        record["repo_id"] = f"{snapshot['org']}/{snapshot['name']}"
        record["revision"] = snapshot["rev"]
    else:
        revision = _download_metadata_revision(folder, marker)
        if revision:  # fetch_models' local_dir download keeps the commit it fetched
            record["revision"] = revision
    return record


def _download_metadata_revision(folder: Path, filename: str) -> str | None:
    """huggingface_hub's local-dir bookkeeping: .cache/huggingface/download/<file>.metadata, commit on line 1."""
    path = folder / ".cache" / "huggingface" / "download" / f"{filename}.metadata"
    try:
        first = path.read_text().splitlines()[0].strip()
    except (OSError, IndexError):
        return None
    return first if _COMMIT.match(first) else None


def _random_weights_manifest(base_dir: Path, model_builder: Any) -> dict[str, Any] | None:
    for root in (Path(base_dir).parent, Path(base_dir)):
        manifest = model_builder.read_manifest(root)
        if manifest is not None:
            return _json_safe(manifest)
    return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _json_safe(value: Any) -> Any:
    """Plain JSON: non-finite floats (DPM-Solver's lambda_min_clipped is -inf) become strings, as JSON has none."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return json.loads(json.dumps(value, default=str))
