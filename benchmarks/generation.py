"""GPU benchmark: SDXL + FaceID Plus v2 twin generation through generation/pipeline.py.

Builds the FULL-size SDXL architecture (UNet, both CLIP text encoders, VAE, FaceID Plus v2
projection + IP attention processors, CLIP ViT-H image encoder) with random weights (same
FLOPs and memory as the real model), saves it in the real folder format
(generation/model_builder.py) and loads it through the project's own loading code.

Configs, measured back to back on one GPU:
  A  naive app: fp16, attention + VAE slicing, a new pipeline loaded for every job
  B  diffusers defaults: fp16, PyTorch SDPA, VAE upcast to fp32, pipeline kept warm
  C  ours (TWIN_PERF_PRESET=default): bf16, fused self-attention QKV, channels_last UNet,
     bf16 VAE, whole-UNet torch.compile (reduce-overhead, CUDA graphs), TF32
  F  ours, fast preset: C + float8 linear layers (torchao), when torchao is importable

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
parser.add_argument("--model-dir", default="/tmp/twinsite-full-sdxl")
parser.add_argument("--cache-dir", default="/tmp/twinsite-models", help="TWIN_MODELS_DIR: holds the compile cache")
parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--runs", type=int, default=2, help="timed runs per measurement (median)")
parser.add_argument("--deadline-s", type=float, default=560.0, help="skip what would not finish before this")
parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the code paths")
parser.add_argument("--estimate", action="append", default=[], metavar="CONFIG=SECONDS",
                    help="override how long a config is expected to take (e.g. C=90 with a warm compile cache)")
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
MODEL_DIR = Path(args.model_dir if not args.smoke else "/tmp/twinsite-tiny-bench")
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


def request(seeds: list[int], steps: int = STEPS) -> pipeline.ImageRequest:
    return pipeline.ImageRequest(
        prompt="a portrait photo of a person in a cafe, natural light, 85mm",
        negative_prompt="blurry, low quality", seeds=seeds, steps=steps, guidance=5.0, identity_strength=0.8,
        id_embedding=EMBEDDING, reference_face=FACE, width=IMAGE_SIDE, height=IMAGE_SIDE,
    )


# --- loading each config through the project's pipeline module ----------------------------------


def load(config: str) -> pipeline.LoadedPipeline:
    if config in ("C", "F"):
        return pipeline.load_pipeline(backend="random", id_embedding_dim=512, preset="default" if config == "C"
                                      else "fast", model_dir=MODEL_DIR, device=DEVICE)
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
                                   performance_options=options, load_seconds=time.perf_counter() - started)


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


def run_job(loaded: pipeline.LoadedPipeline, seeds: list[int]) -> tuple[float, float, list[Image.Image]]:
    """Seconds for one job, UNet ms/step (median), images."""
    timer = StepTimer()
    sync()
    started = time.perf_counter()
    images = pipeline.run_pipeline(loaded, request(seeds), on_step=timer)
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


def unet_flops(loaded: pipeline.LoadedPipeline) -> int:
    """FLOPs of one UNet forward at batch 2 (one image with CFG), counted once."""
    from torch.utils.flop_counter import FlopCounterMode

    captured: dict = {}

    def grab(module, call_args, call_kwargs):
        if not captured:
            captured["args"], captured["kwargs"] = call_args, call_kwargs

    handle = loaded.pipe.unet.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        pipeline.run_pipeline(loaded, request([0], steps=1))
    finally:
        handle.remove()
    loaded.face_projection.clip_embeds = pipeline._clip_embeds(loaded, FACE, count=1, use_cfg=True)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        loaded.pipe.unet(*captured["args"], **captured["kwargs"])
    loaded.face_projection.clip_embeds = None
    return counter.get_total_flops()


def count_unet_flops() -> int:
    """On a B pipeline that is released before the configs are measured (so it adds to no peak)."""
    loaded = load("B")
    try:
        return unet_flops(loaded)
    finally:
        loaded = None
        free(None)


def image_difference(a: Image.Image, b: Image.Image) -> dict[str, float]:
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return {"mean_abs_pixel_diff": round(float(np.mean(np.abs(x - y))), 3),
            "psnr_db": round(10 * np.log10(255**2 / mse), 2) if mse > 0 else float("inf")}


def free(loaded: pipeline.LoadedPipeline | None) -> None:
    del loaded
    pipeline._CACHE.clear()
    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()
    torch._dynamo.reset()


# --- one config ---------------------------------------------------------------------------------

ESTIMATED_S = {"A": 110, "B": 90, "C": 420, "F": 520}
ESTIMATED_S.update({k: float(v) for k, v in (item.split("=", 1) for item in args.estimate)})


def measure(config: str, results: dict, reference_images: dict) -> None:
    record: dict = {"status": "ok"}
    results["configs"][config] = record
    started = time.perf_counter()
    reset_peak()
    loaded = load(config)
    record["load_s"] = round(loaded.load_seconds, 2)
    record["options"] = loaded.performance_options
    # First image = cold start inside a warm process (imports done); compiles here for C/F.
    first_s, _, first = run_job(loaded, [1])
    record["first_job_s"] = round(first_s, 2)
    record["cold_start_s"] = round(time.perf_counter() - started + IMPORT_S, 2)
    if config in ("C", "F"):  # the second batch size compiles too (worker warm-up does both)
        record["compile_batch4_s"] = round(run_job(loaded, [1, 2, 3, 4])[0], 2)
    runs_1, steps_1 = [], []
    reset_peak()
    for _ in range(args.runs):
        if config == "A":
            free(loaded)
            loaded = load(config)
            job_started = time.perf_counter()
            seconds, step_ms, images = run_job(loaded, [1])
            seconds = time.perf_counter() - job_started + loaded.load_seconds
        else:
            seconds, step_ms, images = run_job(loaded, [1])
        runs_1.append(seconds)
        steps_1.append(step_ms)
    record["peak_gb_1"] = peak_gb()
    reference_images[config] = images[0]
    runs_4 = []
    reset_peak()
    for _ in range(max(1, args.runs - (1 if config == "A" else 0))):
        if config == "A":
            free(loaded)
            loaded = load(config)
            seconds = run_job(loaded, [1, 2, 3, 4])[0] + loaded.load_seconds
        else:
            seconds = run_job(loaded, [1, 2, 3, 4])[0]
        runs_4.append(seconds)
    record["peak_gb_4"] = peak_gb()
    record["seconds_per_job_1"] = round(statistics.median(runs_1), 3)
    record["seconds_per_job_1_runs"] = [round(s, 3) for s in runs_1]
    record["seconds_per_job_4"] = round(statistics.median(runs_4), 3)
    record["seconds_per_job_4_runs"] = [round(s, 3) for s in runs_4]
    record["unet_ms_per_step"] = round(statistics.median(steps_1), 2)
    record["vae_ms"] = round(vae_decode_ms(loaded), 1)
    flops = results["unet_flops_per_step"]
    record["unet_tflops"] = round(flops / (record["unet_ms_per_step"] / 1000) / 1e12, 1)
    record["mfu"] = round(record["unet_tflops"] / H100_BF16_PEAK_TFLOPS, 3)
    record["wall_s"] = round(time.perf_counter() - started, 1)
    first[0].save(OUT_DIR / f"sample-{config}.png") if args.smoke is False else None
    free(loaded)


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

    if "B" in samples:
        for config in ("C", "F", "A"):
            if config in samples:
                results["configs"][config]["vs_B_same_seed"] = image_difference(samples["B"], samples[config])
    if "C" in samples and "F" in samples:
        results["configs"]["F"]["vs_C_same_seed"] = image_difference(samples["C"], samples["F"])
    noise = None
    if "B" in samples and "A" in samples:
        noise = results["configs"]["A"]["vs_B_same_seed"]
    results["note_on_noise"] = ("A vs B (both fp16, same weights, sliced vs unsliced attention) shows the "
                                f"run-to-run numeric noise floor of fp16 SDXL: {noise}")
    if "C" in results["configs"] and results["configs"]["C"].get("status") == "ok" and time_left() > 150:
        try:
            results["configs"]["C"]["cold_start_fresh_process_s"] = round(cold_start_subprocess("C"), 1)
        except (subprocess.SubprocessError, OSError) as exc:
            results["configs"]["C"]["cold_start_fresh_process_s"] = f"failed: {exc}"
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
              f"{rec['peak_gb_1']!s:>5}/{rec['peak_gb_4']!s:<6} {rec['cold_start_s']:7.1f}")
    log("wrote", out_file)


if __name__ == "__main__":
    main()
