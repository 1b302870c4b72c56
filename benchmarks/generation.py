"""GPU benchmark: SDXL + FaceID Plus v2 twin generation through generation/pipeline.py.

Builds the FULL-size SDXL architecture (UNet, both CLIP text encoders, VAE, FaceID Plus v2
projection + IP attention processors, CLIP ViT-H image encoder) with random weights (same
FLOPs and memory as the real model), saves it in the real folder format
(generation/model_builder.py) and loads it through the project's own loading code.

Configs, measured back to back on one GPU:
  A  naive app: fp16, attention + VAE slicing, a new pipeline loaded for every job
  B  diffusers defaults: fp16, PyTorch SDPA, VAE upcast to fp32, pipeline kept warm
  C  ours (TWIN_PERF_PRESET=default): bf16, fused self-attention QKV, channels_last UNet,
     bf16 VAE, whole-UNet torch.compile with CUDA graphs (one static graph per batch shape), TF32
  F  ours, fast preset: C + float8 linear layers (torchao), when torchao is importable
  R  experiment: C without CUDA graphs (compile mode default); not a preset

    python -m benchmarks.generation --out-dir benchmarks/results            # on a GPU
    python -m benchmarks.generation --smoke                                  # CPU check

Prints a table and writes benchmarks/results/<gpu>-<date>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

T0 = time.perf_counter()
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--configs", default="B,C,A,F")
parser.add_argument("--model-dir", default="", help="model folder (default /tmp/twinsite-{full-sdxl,tiny-bench})")
parser.add_argument("--cache-dir", default="/tmp/twinsite-models", help="TWIN_MODELS_DIR: holds the compile cache")
parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--runs", type=int, default=2, help="timed runs per measurement (median)")
parser.add_argument("--deadline-s", type=float, default=560.0, help="skip what would not finish before this")
parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the code paths")
parser.add_argument("--estimate", action="append", default=[], metavar="CONFIG=SECONDS",
                    help="override how long a config is expected to take (e.g. C=90 with a warm compile cache)")
parser.add_argument("--compile-cache-in", default="", help="torch mega-cache (.xz) of an earlier run, loaded first")
parser.add_argument("--profile", default="B,C,F", help="configs whose UNet step is profiled (torch.profiler)")
parser.add_argument("--cold-start", default="", help=argparse.SUPPRESS)  # internal: one config in a fresh process
args = parser.parse_args()

SIZE = "tiny" if args.smoke else "full"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinsite.settings")
os.environ.setdefault("TWINSITE_DATA_DIR", "/tmp/twinsite-bench-data")
os.environ["TWIN_MODELS_DIR"] = args.cache_dir
os.environ.setdefault("LOG_FORMAT", "text")
os.environ.setdefault("LOG_LEVEL", "warning")

# Settings only (no django.setup()): the pipeline reads settings and needs no app registry,
# so the GPU machine needs just Django and diffusers beside its own torch.
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from generation import model_builder, pipeline  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
IMAGE_SIDE = 1024 if not args.smoke else 64
STEPS = args.steps if not args.smoke else 3
MODEL_DIR = Path(args.model_dir or ("/tmp/twinsite-tiny-bench" if args.smoke else "/tmp/twinsite-full-sdxl"))
H100_BF16_PEAK_TFLOPS = 989.4  # dense, SXM datasheet


def log(*parts: object) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s]", *parts, flush=True)


def time_left() -> float:
    return args.deadline_s - (time.perf_counter() - T0)


def sync() -> None:
    if CUDA:
        torch.cuda.synchronize()


def reference_face() -> Image.Image:
    image = Image.new("RGB", (256, 256), (90, 110, 140))
    ImageDraw.Draw(image).ellipse((50, 30, 206, 230), fill=(224, 172, 140))
    return image


EMBEDDING = np.random.default_rng(0).standard_normal(512).astype(np.float32)
EMBEDDING /= np.linalg.norm(EMBEDDING)
FACE = reference_face()


def request(seeds: list[int], steps: int = STEPS, strength: float = 0.8) -> pipeline.ImageRequest:
    return pipeline.ImageRequest(
        prompt="a portrait photo of a person in a cafe, natural light, 85mm",
        negative_prompt="blurry, low quality", seeds=seeds, steps=steps, guidance=5.0, identity_strength=strength,
        id_embedding=EMBEDDING, reference_face=FACE, width=IMAGE_SIDE, height=IMAGE_SIDE,
    )


# --- loading each config through the project's pipeline module ----------------------------------


def load(config: str) -> pipeline.LoadedPipeline:
    if config in ("C", "F", "R"):
        return pipeline.load_pipeline(backend="random", id_embedding_dim=512, preset="fast" if config == "F"
                                      else "default", model_dir=MODEL_DIR, device=DEVICE,
                                      compile_mode="default" if config == "R" else None)
    # A and B: the project's loader (same files, same FaceID wiring) without our performance options.
    dtype = torch.float16 if CUDA else torch.float32
    sources = pipeline.resolve_sources(backend="random", id_embedding_dim=512, model_dir=MODEL_DIR)
    started = time.perf_counter()
    pipe = pipeline._load_components(sources, device=torch.device(DEVICE), dtype=dtype)
    projection = pipe.unet.encoder_hid_proj.image_projection_layers[0]
    projection.shortcut, projection.shortcut_scale = True, 1.0
    options = []
    if config == "A":
        ip_processors = {k: v for k, v in pipe.unet.attn_processors.items() if k.endswith("attn2.processor")}
        pipe.enable_attention_slicing("max" if args.smoke else "auto")
        # Slicing replaces every processor; the cross-attention ones must stay IP-Adapter processors.
        pipe.unet.set_attn_processor({**pipe.unet.attn_processors, **ip_processors})
        pipe.vae.enable_slicing()
        options = ["attention-slicing", "vae-slicing", "new-pipeline-per-job"]
    return pipeline.LoadedPipeline(pipe=pipe, backend="random", preset=f"bench-{config}", id_embedding_dim=512,
                                   device=torch.device(DEVICE), dtype=dtype, sources=sources,
                                   performance_options=options, load_seconds=time.perf_counter() - started,
                                   unit_value_weights=pipeline.unit_ip_value_weights(pipe))


class StepTimer:
    """CUDA events at every step end: the gaps are the UNet step (+ the scheduler's tiny update)."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, done: int, total: int) -> None:
        if CUDA:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.events.append(event)
        else:
            self.events.append(time.perf_counter())

    def step_ms(self) -> float:
        sync()
        if CUDA:
            gaps = [a.elapsed_time(b) for a, b in zip(self.events, self.events[1:], strict=False)]
        else:
            gaps = [(b - a) * 1000 for a, b in zip(self.events, self.events[1:], strict=False)]
        return statistics.median(gaps) if gaps else float("nan")


def run_job(loaded: pipeline.LoadedPipeline, seeds: list[int], strength: float = 0.8
            ) -> tuple[float, float, list[Image.Image]]:
    """Seconds for one job, UNet ms/step (median), images."""
    timer = StepTimer()
    sync()
    started = time.perf_counter()
    images = pipeline.run_pipeline(loaded, request(seeds, strength=strength), on_step=timer)
    sync()
    return time.perf_counter() - started, timer.step_ms(), images


def peak_gb() -> float | None:
    return round(torch.cuda.max_memory_allocated() / 1e9, 2) if CUDA else None


def reset_peak() -> None:
    if CUDA:
        torch.cuda.reset_peak_memory_stats()


def vae_decode_ms(loaded: pipeline.LoadedPipeline) -> float:
    pipe = loaded.pipe
    vae_dtype = torch.float32 if (pipe.vae.dtype == torch.float16 and pipe.vae.config.force_upcast) else pipe.vae.dtype
    if vae_dtype != pipe.vae.dtype:
        pipe.vae.to(vae_dtype)
    latents = torch.randn(1, 4, IMAGE_SIDE // 8, IMAGE_SIDE // 8, device=DEVICE, dtype=vae_dtype)
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


UNET_INPUTS: dict = {}


def capture_unet_inputs(loaded: pipeline.LoadedPipeline) -> None:
    """One UNet call's arguments at batch 2 (one image with CFG), from an eager pipeline.

    A hook on a compiled UNet would recompile it, so compiled configs are profiled with
    these inputs cast to their dtype.
    """
    captured: dict = {}

    def grab(module, call_args, call_kwargs):
        if not captured:
            captured["args"], captured["kwargs"] = call_args, call_kwargs

    handle = loaded.pipe.unet.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        pipeline.run_pipeline(loaded, request([0], steps=1))
    finally:
        handle.remove()
    UNET_INPUTS["args"], UNET_INPUTS["kwargs"] = captured["args"], captured["kwargs"]
    with torch.inference_mode():  # as in run_pipeline: a compiled graph guards on it
        UNET_INPUTS["clip_embeds"] = pipeline._clip_embeds(loaded, FACE, count=1, use_cfg=True)


def unet_call(loaded: pipeline.LoadedPipeline):
    """A zero-argument UNet forward on the captured inputs in this pipeline's dtype."""
    def cast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value.to(loaded.dtype)
        if isinstance(value, dict):
            return {k: cast(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(cast(v) for v in value)
        return value

    with torch.inference_mode():
        args, kwargs = cast(UNET_INPUTS["args"]), cast(UNET_INPUTS["kwargs"])
        clip_embeds = cast(UNET_INPUTS["clip_embeds"])

    def call():
        loaded.face_projection.clip_embeds = clip_embeds
        try:
            return loaded.pipe.unet(*args, **kwargs)
        finally:
            loaded.face_projection.clip_embeds = None

    return call


def count_unet_flops() -> int:
    """FLOPs of one UNet forward at batch 2, counted once on a B pipeline that is then released."""
    from torch.utils.flop_counter import FlopCounterMode

    loaded = load("B")
    try:
        capture_unet_inputs(loaded)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            unet_call(loaded)()
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


def profile_unet(loaded: pipeline.LoadedPipeline, steps: int = 5) -> dict:
    """GPU time per kernel kind, top kernels, and wall vs GPU time of one UNet step."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    call = unet_call(loaded)
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
        "top_kernels": [{"name": e.key[:90], "ms_per_step": round(e.self_device_time_total / steps / 1000, 3),
                         "calls_per_step": round(e.count / steps, 1), "kind": kernel_kind(e.key)} for e in top],
    }


def attention_backends() -> dict:
    """SDPA kernels at SDXL's self-attention shapes (bf16): which backend is fastest on this GPU."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    shapes = {"64x64 latents, 10 heads, batch 2": (2, 10, 4096, 64), "32x32, 20 heads, batch 2": (2, 20, 1024, 64),
              "64x64, 10 heads, batch 8": (8, 10, 4096, 64)}
    out: dict = {}
    for label, (b, h, n, d) in shapes.items():
        q, k, v = (torch.randn(b, h, n, d, device=DEVICE, dtype=torch.bfloat16) for _ in range(3))
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


def image_difference(a: Image.Image, b: Image.Image) -> dict[str, float]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return {"mean_abs_pixel_diff": round(float(np.mean(np.abs(x - y))), 3),
            "psnr_db": round(float(10 * np.log10(255**2 / mse)), 2) if mse > 0 else float("inf")}


def free(loaded: pipeline.LoadedPipeline | None) -> None:
    del loaded
    pipeline._CACHE.clear()
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()
    torch._dynamo.reset()


# --- one config ---------------------------------------------------------------------------------

ESTIMATED_S = {"A": 110, "B": 90, "C": 420, "F": 520, "R": 420}  # C, F, R: compile from an empty cache
ESTIMATED_S.update({k: float(v) for k, v in (item.split("=", 1) for item in args.estimate)})
COMPILED = ("C", "F", "R")
LOW_STRENGTH = 0.3  # a second identity strength: the compiled graph must follow it, not bake 0.8 in


def measure(config: str, results: dict, samples: dict) -> None:
    record: dict = {"status": "ok"}
    results["configs"][config] = record
    started = time.perf_counter()
    reset_peak()
    loaded = load(config)
    record["load_s"] = round(loaded.load_seconds, 2)
    record["options"] = loaded.performance_options
    # First image in this (already warm) interpreter: includes the compile for C/F/R.
    first_s, _, first = run_job(loaded, [1])
    record["first_job_s"] = round(first_s, 2)
    record["in_process_start_to_first_image_s"] = round(time.perf_counter() - started + IMPORT_S, 2)
    if config in COMPILED:  # the second static shape (4 images) compiles here, as in the worker's warm_up
        record["first_job_4_s"] = round(run_job(loaded, [1, 2, 3, 4])[0], 2)
        if CUDA:
            save_compile_cache()  # now, so a later run can reuse it even if this one is cut short
    runs_1, steps_1 = [], []
    reset_peak()
    for _ in range(args.runs):
        if config == "A":
            free(loaded)
            loaded = load(config)
            seconds, step_ms, images = run_job(loaded, [1])
            seconds += loaded.load_seconds
        else:
            seconds, step_ms, images = run_job(loaded, [1])
        runs_1.append(seconds)
        steps_1.append(step_ms)
    record["peak_gb_1"] = peak_gb()
    samples[config] = images[0]
    runs_4, steps_4 = [], []
    reset_peak()
    for _ in range(max(1, args.runs - (1 if config == "A" else 0))):
        if config == "A":
            free(loaded)
            loaded = load(config)
            seconds, step_ms, _ = run_job(loaded, [1, 2, 3, 4])
            seconds += loaded.load_seconds
        else:
            seconds, step_ms, _ = run_job(loaded, [1, 2, 3, 4])
        runs_4.append(seconds)
        steps_4.append(step_ms)
    record["peak_gb_4"] = peak_gb()
    record["seconds_per_job_1"] = round(statistics.median(runs_1), 3)
    record["seconds_per_job_1_runs"] = [round(s, 3) for s in runs_1]
    record["seconds_per_job_4"] = round(statistics.median(runs_4), 3)
    record["seconds_per_job_4_runs"] = [round(s, 3) for s in runs_4]
    record["unet_ms_per_step"] = round(statistics.median(steps_1), 2)
    record["unet_ms_per_step_batch_4_images"] = round(statistics.median(steps_4), 2)
    record["vae_ms"] = round(vae_decode_ms(loaded), 1)
    flops = results["unet_flops_per_step"]
    record["unet_tflops"] = round(flops / (record["unet_ms_per_step"] / 1000) / 1e12, 1)
    record["unet_tflops_batch_4_images"] = round(4 * flops / (record["unet_ms_per_step_batch_4_images"] / 1000)
                                                 / 1e12, 1)
    record["mfu"] = round(record["unet_tflops"] / H100_BF16_PEAK_TFLOPS, 3)
    if config != "A":
        samples[f"{config}@{LOW_STRENGTH}"] = run_job(loaded, [1], strength=LOW_STRENGTH)[2][0]
    if config in args.profile.split(",") and CUDA and UNET_INPUTS:
        try:
            record["profile"] = profile_unet(loaded)
        except Exception as exc:  # a profile that fails must not lose the timings
            record["profile"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    record["wall_s"] = round(time.perf_counter() - started, 1)
    if not args.smoke:
        first[0].save(OUT_DIR / f"sample-{config}.png")
    free(loaded)


def save_compile_cache() -> None:
    """torch's portable compile cache ("mega-cache") of this process, for --compile-cache-in next time."""
    import lzma

    saved = torch.compiler.save_cache_artifacts()
    if saved:
        data, _info = saved
        (OUT_DIR / "compile-cache.xz").write_bytes(lzma.compress(data, preset=6))
        log("compile cache saved:", round(len(data) / 1e6, 1), "MB raw")


def load_compile_cache(path: str) -> None:
    import lzma

    started = time.perf_counter()
    torch.compiler.load_cache_artifacts(lzma.decompress(Path(path).read_bytes()))
    log("compile cache loaded from", path, "in", round(time.perf_counter() - started, 1), "s")


def cold_start_subprocess(config: str) -> float:
    """Process start → first image in a fresh interpreter (compile cache warm from the run above)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmarks.generation", "--cold-start", config, "--model-dir",
                    str(MODEL_DIR), "--cache-dir", args.cache_dir] + (["--smoke"] if args.smoke else []),
                   cwd=ROOT, check=True, timeout=max(30, time_left()))
    return time.perf_counter() - started


IMPORT_S = time.perf_counter() - T0
OUT_DIR = Path(os.environ.get("OUT", args.out_dir))
OUT_DIR.mkdir(parents=True, exist_ok=True)

if args.cold_start:
    if args.cold_start == "F" and os.environ.get("TORCHAO_PATH"):
        sys.path.append(os.environ["TORCHAO_PATH"])
    loaded = load(args.cold_start)
    pipeline.run_pipeline(loaded, request([1]))
    sync()
    sys.exit(0)


def main() -> None:
    import diffusers
    import transformers

    gpu = torch.cuda.get_device_name(0) if CUDA else "cpu"
    results: dict = {
        "gpu": gpu,
        "date": date.today().isoformat(),
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "python": sys.version.split()[0],
                     "cuda": torch.version.cuda},
        "setup": {"size": SIZE, "image": IMAGE_SIDE, "steps": STEPS, "guidance": 5.0, "faceid": "plus v2, scale 0.8",
                  "scheduler": "DPMSolverMultistepScheduler", "runs": args.runs,
                  "timing": "end-to-end run_pipeline (text + image encoders, denoising, VAE decode, PIL); median"},
        "configs": {},
    }
    out_file = OUT_DIR / f"{gpu.replace(' ', '-')}-{results['date']}.json"

    def save() -> None:
        out_file.write_text(json.dumps(results, indent=1, default=str) + "\n")

    log("gpu", gpu, results["versions"])
    if not model_builder.is_complete(MODEL_DIR):
        started = time.perf_counter()
        model_builder.build_random_pipeline_folder(MODEL_DIR, size=SIZE, id_embedding_dim=512, device=DEVICE)
        results["build_s"] = round(time.perf_counter() - started, 1)
        log("built", SIZE, "model in", results["build_s"], "s")
    else:
        log("reusing the model folder at", MODEL_DIR)
    gc.collect()
    results["compile_cache"] = "empty at start"
    if args.compile_cache_in and CUDA:
        load_compile_cache(args.compile_cache_in)
        results["compile_cache"] = f"loaded from {Path(args.compile_cache_in).name} (an earlier run's compile)"
    if CUDA:
        results["attention_backends"] = attention_backends()
        log("SDPA backends:", json.dumps(results["attention_backends"]))

    results["unet_flops_per_step"] = count_unet_flops()
    results["unet_tflop_per_step"] = round(results["unet_flops_per_step"] / 1e12, 2)
    log("UNet TFLOP per step (batch 2):", results["unet_tflop_per_step"])
    save()

    samples: dict[str, Image.Image] = {}
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        budget = ESTIMATED_S.get(config, 120) * (0.05 if args.smoke else 1)
        if time_left() < budget:
            results["configs"][config] = {"status": f"not measured: needs ~{budget:.0f} s, {time_left():.0f} s left"}
            log(config, results["configs"][config]["status"])
            save()
            continue
        if config == "F" and os.environ.get("TORCHAO_PATH"):
            # Only now: some diffusers releases fail to import while torchao is importable.
            sys.path.append(os.environ["TORCHAO_PATH"])
        try:
            log("measuring", config)
            measure(config, results, samples)
        except Exception as exc:  # one broken config must not lose the others' numbers
            results["configs"][config] = {"status": f"failed: {type(exc).__name__}: {str(exc)[:300]}"}
            free(None)
        log(config, json.dumps(results["configs"][config]))
        save()

    configs = results["configs"]
    if "B" in samples:
        for config in ("C", "F", "R", "A"):
            if config in samples:
                configs[config]["vs_B_same_seed"] = image_difference(samples["B"], samples[config])
            low = f"{config}@{LOW_STRENGTH}"
            if low in samples and f"B@{LOW_STRENGTH}" in samples:
                configs[config][f"vs_B_same_seed_strength_{LOW_STRENGTH}"] = image_difference(
                    samples[f"B@{LOW_STRENGTH}"], samples[low])
                configs[config][f"strength_{LOW_STRENGTH}_vs_0.8"] = image_difference(samples[config], samples[low])
    if "C" in samples and "F" in samples:
        configs["F"]["vs_C_same_seed"] = image_difference(samples["C"], samples["F"])
    noise = configs["A"].get("vs_B_same_seed") if "A" in samples and "B" in samples else None
    results["note_on_noise"] = ("A vs B (both fp16, same weights, sliced vs unsliced attention) shows the "
                                f"numeric noise floor of fp16 SDXL: {noise}")
    for name, rec in configs.items():
        if rec.get("status") != "ok":
            continue
        if name not in COMPILED:
            rec["cold_start_s"] = rec["in_process_start_to_first_image_s"]
            continue
        rec["cold_start_s"] = None
        if time_left() < 100 * (0.05 if args.smoke else 1):
            rec["cold_start_fresh_process_s"] = "not measured: out of time"
            continue
        try:  # the compile cache on disk is warm now: what a restarted worker pays
            rec["cold_start_s"] = rec["cold_start_fresh_process_s"] = round(cold_start_subprocess(name), 1)
        except (subprocess.SubprocessError, OSError) as exc:
            rec["cold_start_fresh_process_s"] = f"failed: {exc}"
        log(name, "cold start in a fresh process:", rec["cold_start_fresh_process_s"])
    save()

    header = f"{'config':6} {'s/job 1':>8} {'s/job 4':>8} {'UNet ms/step':>13} {'VAE ms':>7} {'TFLOP/s':>8} " \
             f"{'MFU':>6} {'peak GB 1/4':>12} {'cold s':>7}"
    print(header)
    for name, rec in results["configs"].items():
        if rec.get("status") != "ok":
            print(f"{name:6} {rec.get('status')}")
            continue
        print(f"{name:6} {rec['seconds_per_job_1']:8.2f} {rec['seconds_per_job_4']:8.2f} "
              f"{rec['unet_ms_per_step']:13.1f} {rec['vae_ms']:7.1f} {rec['unet_tflops']:8.1f} {rec['mfu']:6.3f} "
              f"{rec['peak_gb_1']!s:>5}/{rec['peak_gb_4']!s:<6} {rec['cold_start_s']!s:>7}")
    log("wrote", out_file)


if __name__ == "__main__":
    main()
