"""The folder layout of a built model and its manifest: how to tell a finished build from a partial one.

Reading a folder needs no ML library, so the web process and generation/pipeline/ can check one cheaply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generation.model_builder.configs import ModelSize

BASE_SUBDIR = "base"
ADAPTER_SUBDIR = "ip_adapter"
IMAGE_ENCODER_SUBDIR = "image_encoder"
MANIFEST_NAME = "twinsite-random-model.json"
MANIFEST_FORMAT = 1


@dataclass(frozen=True)
class RandomModelFolder:
    """Where the pieces of a built folder are: what the loader in generation/pipeline/loading.py needs."""

    root: Path
    size: ModelSize
    id_embedding_dim: int

    @property
    def base_dir(self) -> Path:
        return self.root / BASE_SUBDIR

    @property
    def adapter_dir(self) -> Path:
        return self.root / ADAPTER_SUBDIR

    @property
    def adapter_weight_name(self) -> str:
        return adapter_weight_name(self.size, self.id_embedding_dim)

    @property
    def image_encoder_dir(self) -> Path:
        return self.root / IMAGE_ENCODER_SUBDIR


def adapter_weight_name(size: str, id_embedding_dim: int) -> str:
    return f"ip-adapter-faceid-plusv2_{size}_{id_embedding_dim}.bin"


def read_manifest(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(root) / MANIFEST_NAME).read_text())
    except (OSError, ValueError):
        return None


def write_manifest(root: Path, *, size: str, dtype: str, seed: int) -> None:
    """Written last by a build: its presence is what `is_complete` trusts."""
    manifest = {
        "format": MANIFEST_FORMAT,
        "size": size,
        "dtype": dtype,
        "seed": seed,
        "note": "random weights: SDXL + FaceID Plus v2 architecture, for tests and benchmarks only",
    }
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")


def is_complete(root: Path) -> bool:
    """True when `root` holds a finished build (the manifest is written last)."""
    root = Path(root)
    manifest = read_manifest(root)
    return (
        manifest is not None
        and manifest.get("format") == MANIFEST_FORMAT
        and (root / BASE_SUBDIR / "model_index.json").is_file()
        and (root / IMAGE_ENCODER_SUBDIR / "config.json").is_file()
    )


def folder_at(root: Path, id_embedding_dim: int) -> RandomModelFolder:
    """The built folder at `root`, described for the adapter of `id_embedding_dim`."""
    manifest = read_manifest(root) or {}
    return RandomModelFolder(root=root, size=manifest.get("size", "tiny"), id_embedding_dim=id_embedding_dim)
