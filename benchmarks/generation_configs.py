"""The configurations benchmarks/generation.py compares (A, B, C, F, R: its doc says what each is),
the options of one run, and loading each configuration through generation/pipeline/."""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import T0, default_model_dir, portrait_request, reference_face

if TYPE_CHECKING:
    from PIL import Image

    from generation.pipeline import ImageRequest, LoadedPipeline

# C, F, R: compile from an empty cache; T right after C reuses C's compiled kernels from the disk cache.
ESTIMATED_S = {"A": 110, "B": 90, "C": 420, "F": 520, "R": 420, "T": 200}
COMPILED = ("C", "F", "R", "T")
# T: the `default` worker (C) serving a turbo job: Hyper-SD's LoRA swapped into the same compiled graphs.
RECIPE_BY_CONFIG = {"T": "turbo"}
LOW_STRENGTH = 0.3  # a second identity strength: the compiled graph must follow it, not bake 0.8 in
H100_BF16_PEAK_TFLOPS = 989.4  # dense, SXM datasheet
# Dense bf16 tensor-core peaks (datasheets, no sparsity), by a substring of the device name; H200 is H100 silicon.
BF16_PEAK_TFLOPS = {"H200": 989.4, "H100": 989.4, "GH200": 989.4, "B200": 2250.0, "A100": 312.0, "L40S": 362.1}
ID_EMBEDDING_DIM = 512


@dataclass
class Bench:
    """One benchmark run: its options and what follows from them and from this machine."""

    args: argparse.Namespace
    cuda: bool
    import_s: float  # process start -> the ML stack imported: part of every cold start
    embedding: Any
    face: Image.Image
    estimated_s: dict[str, float] = field(default_factory=dict)
    unet_inputs: dict[str, Any] = field(default_factory=dict)  # see profiling.capture_unet_inputs

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Bench:
        import numpy as np
        import torch

        embedding = np.random.default_rng(0).standard_normal(ID_EMBEDDING_DIM).astype(np.float32)
        embedding /= np.linalg.norm(embedding)
        overrides = {k: float(v) for k, v in (item.split("=", 1) for item in args.estimate)}
        return cls(
            args=args,
            cuda=torch.cuda.is_available(),
            import_s=time.perf_counter() - T0,
            embedding=embedding,
            face=reference_face(),
            estimated_s={**ESTIMATED_S, **overrides},
        )

    @property
    def smoke(self) -> bool:
        return bool(self.args.smoke)

    @property
    def size(self) -> str:
        return "tiny" if self.smoke else "full"

    @property
    def device(self) -> str:
        return "cuda" if self.cuda else "cpu"

    @property
    def image_counts(self) -> tuple[int, ...]:
        return tuple(int(n) for n in str(self.args.images).split(",") if n.strip())

    @property
    def image_side(self) -> int:
        return 64 if self.smoke else 1024

    @property
    def steps(self) -> int:
        return 3 if self.smoke else self.args.steps

    @property
    def model_dir(self) -> Path:
        return Path(self.args.model_dir) if self.args.model_dir else default_model_dir(smoke=self.smoke)

    @property
    def out_dir(self) -> Path:
        return Path(os.environ.get("OUT", self.args.out_dir))


def time_left(bench: Bench) -> float:
    return bench.args.deadline_s - (time.perf_counter() - T0)


def allow_torchao() -> None:
    """Only when F is measured: some diffusers releases fail to import while torchao is importable."""
    if os.environ.get("TORCHAO_PATH"):
        sys.path.append(os.environ["TORCHAO_PATH"])


def bf16_peak_tflops(gpu_name: str) -> float | None:
    """The running GPU's dense bf16 datasheet peak, or None for a GPU not in the table (MFU left out)."""
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in gpu_name), None)


def request(
    bench: Bench, seeds: list[int], steps: int | None = None, strength: float = 0.8, preset: str = "default"
) -> ImageRequest:
    return portrait_request(
        preset=preset,
        seeds=seeds,
        steps=bench.steps if steps is None else steps,
        side=bench.image_side,
        embedding=bench.embedding,
        reference_face=bench.face,
        strength=strength,
    )


def load(bench: Bench, config: str) -> LoadedPipeline:
    import torch

    from generation import pipeline

    if config in COMPILED:
        return pipeline.load_pipeline(
            backend="random",
            id_embedding_dim=ID_EMBEDDING_DIM,
            preset="fast" if config == "F" else "default",
            model_dir=bench.model_dir,
            device=bench.device,
            compile_mode="default" if config == "R" else None,
        )
    # A and B: the project's loader (same files, same FaceID wiring) without our performance options.
    dtype = torch.float16 if bench.cuda else torch.float32
    sources = pipeline.resolve_sources(backend="random", id_embedding_dim=ID_EMBEDDING_DIM, model_dir=bench.model_dir)
    started = time.perf_counter()
    pipe = pipeline._load_components(sources, device=torch.device(bench.device), dtype=dtype)
    options = []  # the loader already set FaceID Plus v2's shortcut, at the recipe's scale 1.0
    if config == "A":
        ip_processors = {k: v for k, v in pipe.unet.attn_processors.items() if k.endswith("attn2.processor")}
        pipe.enable_attention_slicing("max" if bench.smoke else "auto")
        # Slicing replaces every processor; the cross-attention ones must stay IP-Adapter processors.
        pipe.unet.set_attn_processor({**pipe.unet.attn_processors, **ip_processors})
        pipe.vae.enable_slicing()
        options = ["attention-slicing", "vae-slicing", "new-pipeline-per-job"]
    return pipeline.LoadedPipeline(
        pipe=pipe,
        backend="random",
        preset=f"bench-{config}",
        id_embedding_dim=ID_EMBEDDING_DIM,
        device=torch.device(bench.device),
        dtype=dtype,
        sources=sources,
        performance_options=options,
        load_seconds=time.perf_counter() - started,
        unit_value_weights=pipeline.unit_ip_value_weights(pipe),
    )


def free(loaded: LoadedPipeline | None) -> None:
    import torch

    from generation import pipeline

    del loaded
    pipeline._CACHE.clear()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch._dynamo.reset()
