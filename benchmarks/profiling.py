"""Measuring one loaded pipeline: job and UNet-step timings, peak memory, FLOPs, kernel profiles.

Used by benchmarks/generation.py on each configuration of benchmarks/generation_configs.py.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from benchmarks.generation_configs import Bench, free, load, request

if TYPE_CHECKING:
    from PIL import Image

    from generation.pipeline import LoadedPipeline


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gb() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 1e9, 2) if torch.cuda.is_available() else None


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


class StepTimer:
    """CUDA events at every step end: the gaps are the UNet step (+ the scheduler's tiny update)."""

    def __init__(self) -> None:
        import torch

        self.cuda = torch.cuda.is_available()
        self.events: list = []

    def __call__(self, done: int, total: int) -> None:
        if self.cuda:
            import torch

            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.events.append(event)
        else:
            self.events.append(time.perf_counter())

    def step_ms(self) -> float:
        sync()
        if self.cuda:
            gaps = [a.elapsed_time(b) for a, b in zip(self.events, self.events[1:], strict=False)]
        else:
            gaps = [(b - a) * 1000 for a, b in zip(self.events, self.events[1:], strict=False)]
        return statistics.median(gaps) if gaps else float("nan")


def run_job(
    bench: Bench, loaded: LoadedPipeline, seeds: list[int], strength: float = 0.8, preset: str = "default"
) -> tuple[float, float, list[Image.Image]]:
    """Seconds for one job of recipe `preset`, UNet ms/step (median), images."""
    from generation import pipeline

    timer = StepTimer()
    sync()
    started = time.perf_counter()
    job = request(bench, seeds, strength=strength, preset=preset)
    images = pipeline.run_pipeline(loaded, job, on_step=timer)
    sync()
    return time.perf_counter() - started, timer.step_ms(), images


def bf16_matmul_tflops(size: int = 8192, repeats: int = 20) -> float | None:
    """The bf16 GEMM rate this GPU reaches right now (a square matmul), the honest ceiling for MFU."""
    import torch

    if not torch.cuda.is_available():
        return None
    a = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(size, size, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    sync()
    seconds = start.elapsed_time(end) / 1000 / repeats
    del a, b
    torch.cuda.empty_cache()
    return round(2 * size**3 / seconds / 1e12, 1)


def vae_decode_ms(bench: Bench, loaded: LoadedPipeline) -> float:
    import torch

    pipe = loaded.pipe
    vae_dtype = torch.float32 if (pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast) else pipe.vae.dtype
    if vae_dtype != pipe.vae.dtype:
        pipe.vae.to(vae_dtype)
    side = bench.image_side // 8
    latents = torch.randn(1, 4, side, side, device=bench.device, dtype=vae_dtype)
    timings = []
    with torch.inference_mode():
        for _ in range(3):
            sync()
            started = time.perf_counter()
            pipe.vae.decode(latents / pipe.vae.config.scaling_factor)
            sync()
            timings.append((time.perf_counter() - started) * 1000)
    if vae_dtype != loaded.dtype:
        pipe.vae.to(loaded.dtype)
    return statistics.median(timings[1:])


def capture_unet_inputs(bench: Bench, loaded: LoadedPipeline) -> None:
    """One UNet call's arguments at batch 2 (one image with CFG), from an eager pipeline.

    A hook on a compiled UNet would recompile it, so compiled configs are profiled with
    these inputs cast to their dtype.
    """
    import torch

    from generation import pipeline

    captured: dict = {}

    def grab(module, call_args, call_kwargs):
        if not captured:
            captured["args"], captured["kwargs"] = call_args, call_kwargs

    handle = loaded.pipe.unet.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        pipeline.run_pipeline(loaded, request(bench, [0], steps=1))
    finally:
        handle.remove()
    bench.unet_inputs["args"], bench.unet_inputs["kwargs"] = captured["args"], captured["kwargs"]
    with torch.inference_mode():  # as in run_pipeline: a compiled graph guards on it
        bench.unet_inputs["clip_embeds"] = pipeline._clip_embeds(loaded, bench.face, count=1, use_cfg=True)


def unet_call(bench: Bench, loaded: LoadedPipeline) -> Callable[[], Any]:
    """A zero-argument UNet forward on the captured inputs in this pipeline's dtype."""
    import torch

    def cast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(loaded.dtype)
        if isinstance(value, dict):
            return {k: cast(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(cast(v) for v in value)
        return value

    with torch.inference_mode():
        args, kwargs = cast(bench.unet_inputs["args"]), cast(bench.unet_inputs["kwargs"])
        clip_embeds = cast(bench.unet_inputs["clip_embeds"])

    def call():
        loaded.face_projection.clip_embeds = clip_embeds
        try:
            return loaded.pipe.unet(*args, **kwargs)
        finally:
            loaded.face_projection.clip_embeds = None

    return call


def count_unet_flops(bench: Bench) -> int:
    """FLOPs of one UNet forward at batch 2, counted once on a B pipeline that is then released."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    loaded = load(bench, "B")
    try:
        capture_unet_inputs(bench, loaded)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            unet_call(bench, loaded)()
        return counter.get_total_flops()
    finally:
        loaded = None
        free(None)


KERNEL_KINDS = (  # first match wins; names of cuDNN/cuBLAS/flash/Triton kernels on Hopper
    ("attention", ("flash", "fmha", "attention", "sdpa", "softmax")),
    ("convolution", ("conv", "implicit_gemm", "winograd", "fprop", "dgrad", "nchw", "nhwc")),
    ("matmul", ("gemm", "xmma", "cutlass", "nvjet", "matmul", "_mm_", "scaled_mm", "wgmma", "triton_tem")),
)


def kernel_kind(name: str) -> str:
    lowered = name.lower()
    for kind, needles in KERNEL_KINDS:
        if any(needle in lowered for needle in needles):
            return kind
    return "elementwise/norm/other"


def profile_unet(bench: Bench, loaded: LoadedPipeline, steps: int = 5) -> dict:
    """GPU time per kernel kind, top kernels, and wall vs GPU time of one UNet step."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    call = unet_call(bench, loaded)
    with torch.inference_mode(), torch.compiler.set_stance("fail_on_recompile"):
        for _ in range(2):
            call()
        sync()
        walls = []
        for _ in range(steps):
            started = time.perf_counter()
            call()
            sync()
            walls.append((time.perf_counter() - started) * 1000)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(steps):
                call()
            sync()
    kernels = [e for e in prof.key_averages() if e.device_type == DeviceType.CUDA and e.self_device_time_total > 0]
    gpu_us = sum(e.self_device_time_total for e in kernels) / steps
    by_kind: dict[str, float] = {}
    for e in kernels:
        kind = kernel_kind(e.key)
        by_kind[kind] = by_kind.get(kind, 0.0) + e.self_device_time_total / steps / 1000
    top = sorted(kernels, key=lambda e: e.self_device_time_total, reverse=True)[:12]
    wall_ms = statistics.median(walls)
    return {
        "wall_ms_per_step": round(wall_ms, 2),
        "gpu_kernel_ms_per_step": round(gpu_us / 1000, 2),
        "cpu_launch_overhead_ms": round(max(0.0, wall_ms - gpu_us / 1000), 2),
        "kernel_launches_per_step": round(sum(e.count for e in kernels) / steps),
        "ms_by_kind": {k: round(v, 2) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
        "share_by_kind": {k: round(v / (gpu_us / 1000), 3) for k, v in by_kind.items()},
        "top_kernels": [
            {
                "name": e.key[:90],
                "ms_per_step": round(e.self_device_time_total / steps / 1000, 3),
                "calls_per_step": round(e.count / steps, 1),
                "kind": kernel_kind(e.key),
            }
            for e in top
        ],
    }


def attention_backends(bench: Bench) -> dict:
    """SDPA kernels at SDXL's self-attention shapes (bf16): which backend is fastest on this GPU."""
    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    shapes = {
        "64x64 latents, 10 heads, batch 2": (2, 10, 4096, 64),
        "32x32, 20 heads, batch 2": (2, 20, 1024, 64),
        "64x64, 10 heads, batch 8": (8, 10, 4096, 64),
    }
    out: dict = {}
    for label, (b, h, n, d) in shapes.items():
        q, k, v = (torch.randn(b, h, n, d, device=bench.device, dtype=torch.bfloat16) for _ in range(3))
        flops = 4 * b * h * n * n * d
        row = {}
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION):
            try:
                with sdpa_kernel(backend), torch.inference_mode():
                    for _ in range(3):
                        torch.nn.functional.scaled_dot_product_attention(q, k, v)
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    for _ in range(20):
                        torch.nn.functional.scaled_dot_product_attention(q, k, v)
                    end.record()
                    sync()
                ms = start.elapsed_time(end) / 20
                row[backend.name] = {"ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1)}
            except RuntimeError as exc:
                row[backend.name] = f"unavailable: {str(exc)[:80]}"
        out[label] = row
    return out
