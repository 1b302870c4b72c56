"""Build the random-weight model folder the `tiny` backend loads (also built lazily on first use).

`--size full --path DIR` builds the full-size SDXL architecture with random weights (9.3 GB,
fp16) for GPU benchmarks; load it with pipeline.load_pipeline(backend="random", model_dir=DIR).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation import model_builder
from generation.pipeline import TINY_FOLDER_NAME

DEFAULT_DIMS = (128, 512)  # the test face models' embedding size, and buffalo_l's


class Command(BaseCommand):
    # Worker-host setup: must work whatever state the web app's URLs or models are in.
    requires_system_checks: list[str] = []
    help = "Build the random-weight SDXL + FaceID Plus v2 folder for the tiny backend (TWIN_MODELS_DIR/tiny)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dim",
            type=int,
            action="append",
            help="id-embedding size to build an adapter for (repeatable; default: 128 and 512)",
        )
        parser.add_argument("--size", choices=["tiny", "full"], default="tiny")
        parser.add_argument("--path", type=Path, help="where to build (default TWIN_MODELS_DIR/tiny; needed for full)")
        parser.add_argument("--device", default="cpu", help="where to initialise the weights (cuda is faster for full)")
        parser.add_argument("--force", action="store_true", help="rebuild even if the folder exists")

    def handle(self, *args: object, **options: object) -> None:
        size = options["size"]
        dims = options["dim"] or list(DEFAULT_DIMS)
        if any(dim < 1 for dim in dims):
            raise CommandError("--dim must be positive")
        path = options["path"]
        if path is None:
            if size == "full":
                raise CommandError("--size full needs --path (it is about 9.3 GB)")
            path = Path(settings.TWIN_MODELS_DIR) / TINY_FOLDER_NAME
        path = Path(path)
        started = time.monotonic()
        if options["force"] and path.exists():
            shutil.rmtree(path)
        if size == "full":
            import torch

            if not model_builder.is_complete(path):
                model_builder.build_random_pipeline_folder(
                    path, size="full", id_embedding_dim=dims[0], dtype=torch.float16, device=options["device"]
                )
        for dim in dims:
            model_builder.ensure_random_pipeline_folder(path, size=size, id_embedding_dim=dim)
        adapters = sorted(p.name for p in (path / model_builder.ADAPTER_SUBDIR).iterdir())
        self.stdout.write(
            self.style.SUCCESS(
                f"{size} random-weight models in {path} ({time.monotonic() - started:.1f} s); "
                f"adapters: {', '.join(adapters)}"
            )
        )
