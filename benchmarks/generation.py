"""GPU benchmark: SDXL + FaceID Plus v2 twin generation through generation/pipeline/.

Builds the FULL-size SDXL architecture (UNet, both CLIP text encoders, VAE, FaceID Plus v2
projection + IP attention processors, CLIP ViT-H image encoder) with random weights (same
FLOPs and memory as the real model), saves it in the real folder format
(generation/model_builder/) and loads it through the project's own loading code.

Configs, measured back to back on one GPU (loaded by benchmarks/generation_configs.py):
  A  naive app: fp16, attention + VAE slicing, a new pipeline loaded for every job
  B  diffusers defaults: fp16, PyTorch SDPA, VAE upcast to fp32, pipeline kept warm
  C  ours (TWIN_PERF_PRESET=default): bf16, fused self-attention QKV, channels_last UNet,
     bf16 VAE, whole-UNet torch.compile with CUDA graphs (one static graph per batch shape), TF32
  F  ours, fast preset: C + float8 linear layers (torchao), when torchao is importable
  R  experiment: C without CUDA graphs (compile mode default); not a preset
  T  the `turbo` recipe on C's worker: Hyper-SD's 8-step CFG LoRA fused (both weight versions kept,
     swapped in place), DDIM trailing, 8 steps, CFG 5; the same compiled graphs as C

    python -m benchmarks.generation --out-dir benchmarks/results            # on a GPU
    python -m benchmarks.generation --smoke                                  # CPU check

Prints a table and writes benchmarks/results/<gpu>-<date>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.common import ROOT, add_model_arguments, configure_environment, log
from benchmarks.compile_cache import load_compile_cache, save_compile_cache
from benchmarks.generation_configs import (
    COMPILED,
    ESTIMATED_S,
    H100_BF16_PEAK_TFLOPS,
    LOW_STRENGTH,
    RECIPE_BY_CONFIG,
    Bench,
    allow_torchao,
    bf16_peak_tflops,
    free,
    load,
    reference_face,
    request,
    time_left,
)
from benchmarks.profiling import (
    KERNEL_KINDS,
    StepTimer,
    attention_backends,
    bf16_matmul_tflops,
    capture_unet_inputs,
    count_unet_flops,
    kernel_kind,
    peak_gb,
    profile_unet,
    reset_peak,
    run_job,
    sync,
    unet_call,
    vae_decode_ms,
)
from benchmarks.reporting import compare_samples, describe_run, image_difference, print_table

if TYPE_CHECKING:
    from PIL import Image

# What other benchmarks (and notebooks) import from here: the pieces live in the modules above.
__all__ = [
    "COMPILED",
    "ESTIMATED_S",
    "H100_BF16_PEAK_TFLOPS",
    "KERNEL_KINDS",
    "LOW_STRENGTH",
    "ROOT",
    "Bench",
    "StepTimer",
    "attention_backends",
    "capture_unet_inputs",
    "cold_start_subprocess",
    "count_unet_flops",
    "free",
    "image_difference",
    "kernel_kind",
    "load",
    "load_compile_cache",
    "log",
    "main",
    "measure",
    "parse_args",
    "peak_gb",
    "profile_unet",
    "reference_face",
    "request",
    "reset_peak",
    "run_job",
    "save_compile_cache",
    "sync",
    "time_left",
    "unet_call",
    "vae_decode_ms",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="B,C,A,F")
    add_model_arguments(parser)
    parser.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", type=int, default=2, help="timed runs per measurement (median)")
    parser.add_argument(
        "--images", default="1,4", help="jobs of these image counts (1 and/or 4); each is a compiled shape"
    )
    parser.add_argument("--deadline-s", type=float, default=560.0, help="skip what would not finish before this")
    parser.add_argument(
        "--no-compile-cache-out", action="store_true", help="do not pack the compile cache into --out-dir (saves time)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU: checks the code paths")
    parser.add_argument(
        "--estimate",
        action="append",
        default=[],
        metavar="CONFIG=SECONDS",
        help="override how long a config is expected to take (e.g. C=90 with a warm compile cache)",
    )
    parser.add_argument("--profile", default="B,C,F", help="configs whose UNet step is profiled (torch.profiler)")
    parser.add_argument("--cold-start", default="", help=argparse.SUPPRESS)  # internal: one config in a fresh process
    return parser.parse_args(argv)


def measure(bench: Bench, config: str, results: dict, samples: dict) -> None:
    record: dict = {"status": "ok"}
    results["configs"][config] = record
    recipe = RECIPE_BY_CONFIG.get(config, "default")
    record["recipe"] = recipe
    four = 4 in bench.image_counts

    def job(seeds: list[int], strength: float = 0.8) -> tuple[float, float, list]:
        return run_job(bench, loaded, seeds, strength=strength, preset=recipe)

    started = time.perf_counter()
    reset_peak()
    loaded = load(bench, config)
    record["load_s"] = round(loaded.load_seconds, 2)
    record["options"] = loaded.performance_options
    # First image in this (already warm) interpreter: includes the compile for C/F/R/T.
    first_s, _, first = job([1])
    record["first_job_s"] = round(first_s, 2)
    record["in_process_start_to_first_image_s"] = round(time.perf_counter() - started + bench.import_s, 2)
    if config in COMPILED and four:  # the second static shape (4 images) compiles here, as in the worker's warm_up
        record["first_job_4_s"] = round(job([1, 2, 3, 4])[0], 2)
    if config in COMPILED and bench.cuda and not bench.args.no_compile_cache_out:
        save_compile_cache(bench.out_dir)  # now, so a later run can reuse it even if this one is cut short
    if loaded.recipe_weights is not None:
        record["lora_fused_weights"] = len(loaded.recipe_weights.params)
        record["recipe_switch_s"] = round(_recipe_switch_s(loaded, recipe), 3)
    # A stands for an app that loads a new pipeline for every job: its timed jobs include that load,
    # and the same jobs without the load are recorded beside them, so "x A" can be read both ways.
    runs_1, steps_1, runs_1_no_load = [], [], []
    reset_peak()
    for _ in range(bench.args.runs):
        if config == "A":
            free(loaded)
            loaded = load(bench, config)
        seconds, step_ms, images = job([1])
        runs_1_no_load.append(seconds)
        runs_1.append(seconds + (loaded.load_seconds if config == "A" else 0))
        steps_1.append(step_ms)
    record["peak_gb_1"] = peak_gb()
    samples[config] = images[0]
    record["seconds_per_job_1"] = round(statistics.median(runs_1), 3)
    record["seconds_per_job_1_runs"] = [round(s, 3) for s in runs_1]
    if config == "A":
        record["timed_jobs_include_pipeline_load"] = True
        record["seconds_per_job_1_without_load"] = round(statistics.median(runs_1_no_load), 3)
    record["unet_ms_per_step"] = round(statistics.median(steps_1), 2)
    flops = results["unet_flops_per_step"]
    record["unet_tflops"] = round(flops / (record["unet_ms_per_step"] / 1000) / 1e12, 1)
    if four:
        runs_4, steps_4 = [], []
        reset_peak()
        for _ in range(max(1, bench.args.runs - (1 if config == "A" else 0))):
            if config == "A":
                free(loaded)
                loaded = load(bench, config)
            seconds, step_ms, _ = job([1, 2, 3, 4])
            runs_4.append(seconds + (loaded.load_seconds if config == "A" else 0))
            steps_4.append(step_ms)
        record["peak_gb_4"] = peak_gb()
        record["seconds_per_job_4"] = round(statistics.median(runs_4), 3)
        record["seconds_per_job_4_runs"] = [round(s, 3) for s in runs_4]
        record["unet_ms_per_step_batch_4_images"] = round(statistics.median(steps_4), 2)
        record["unet_tflops_batch_4_images"] = round(
            4 * flops / (record["unet_ms_per_step_batch_4_images"] / 1000) / 1e12, 1
        )
    record["vae_ms"] = round(vae_decode_ms(bench, loaded), 1)
    _add_mfu(record, results)
    if config != "A":
        samples[f"{config}@{LOW_STRENGTH}"] = job([1], strength=LOW_STRENGTH)[2][0]
    if config in bench.args.profile.split(",") and bench.cuda and bench.unet_inputs:
        try:
            record["profile"] = profile_unet(bench, loaded)
        except Exception as exc:  # a profile that fails must not lose the timings
            record["profile"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
    record["wall_s"] = round(time.perf_counter() - started, 1)
    if not bench.smoke:
        first[0].save(bench.out_dir / f"sample-{config}.png")
    free(loaded)


def _recipe_switch_s(loaded: Any, recipe: str) -> float:
    """What a worker pays when consecutive jobs differ in recipe: copying the other UNet weights in."""
    other = next(name for name in loaded.recipe_weights.values if name != loaded.recipe_weights.active)
    sync()
    started = time.perf_counter()
    loaded.recipe_weights.use(other)
    sync()
    seconds = time.perf_counter() - started
    loaded.recipe_weights.use(recipe)
    return seconds


def _add_mfu(record: dict, results: dict) -> None:
    """MFU against this GPU's dense bf16 datasheet peak, and against the bf16 GEMM rate measured in this run."""
    for suffix in ("", "_batch_4_images"):
        tflops = record.get(f"unet_tflops{suffix}")
        if tflops is None:
            continue
        if results.get("bf16_peak_tflops"):
            record[f"mfu{suffix}"] = round(tflops / results["bf16_peak_tflops"], 3)
        if results.get("bf16_matmul_tflops_measured"):
            record[f"mfu_vs_measured_matmul{suffix}"] = round(tflops / results["bf16_matmul_tflops_measured"], 3)


def cold_start_subprocess(bench: Bench, config: str) -> float:
    """Process start → first image in a fresh interpreter (compile cache warm from the run above)."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "benchmarks.generation", "--cold-start", config]
    command += ["--model-dir", str(bench.model_dir), "--cache-dir", bench.args.cache_dir]
    subprocess.run(
        command + (["--smoke"] if bench.smoke else []), cwd=ROOT, check=True, timeout=max(30, time_left(bench))
    )
    return time.perf_counter() - started


def _cold_start(bench: Bench, config: str) -> None:
    """The child of cold_start_subprocess: load one config and make its first image."""
    from generation import pipeline

    if config == "F":
        allow_torchao()
    loaded = load(bench, config)
    pipeline.run_pipeline(loaded, request(bench, [1]))
    sync()


def _measure_cold_starts(bench: Bench, configs: dict[str, Any]) -> None:
    for name, rec in configs.items():
        if rec.get("status") != "ok":
            continue
        if name not in COMPILED:
            rec["cold_start_s"] = rec["in_process_start_to_first_image_s"]
            continue
        rec["cold_start_s"] = None
        if time_left(bench) < 100 * (0.05 if bench.smoke else 1):
            rec["cold_start_fresh_process_s"] = "not measured: out of time"
            continue
        try:  # the compile cache on disk is warm now: what a restarted worker pays
            rec["cold_start_s"] = rec["cold_start_fresh_process_s"] = round(cold_start_subprocess(bench, name), 1)
        except (subprocess.SubprocessError, OSError) as exc:
            rec["cold_start_fresh_process_s"] = f"failed: {exc}"
        log(name, "cold start in a fresh process:", rec["cold_start_fresh_process_s"])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    configure_environment(cache_dir=args.cache_dir)
    import torch  # noqa: F401  (imported before Bench: its import time is part of every cold start)

    from generation import model_builder, pipeline  # noqa: F401

    bench = Bench.from_args(args)
    bench.out_dir.mkdir(parents=True, exist_ok=True)
    if args.cold_start:
        _cold_start(bench, args.cold_start)
        return

    results = describe_run(bench)
    out_file = bench.out_dir / f"{results['gpu'].replace(' ', '-')}-{results['date']}.json"

    def save() -> None:
        out_file.write_text(json.dumps(results, indent=1, default=str) + "\n")

    log("gpu", results["gpu"], results["versions"])
    if not model_builder.is_complete(bench.model_dir):
        started = time.perf_counter()
        model_builder.build_random_pipeline_folder(
            bench.model_dir, size=bench.size, id_embedding_dim=512, device=bench.device
        )
        results["build_s"] = round(time.perf_counter() - started, 1)
        log("built", bench.size, "model in", results["build_s"], "s")
    else:
        log("reusing the model folder at", bench.model_dir)
    gc.collect()
    results["compile_cache"] = "empty at start"
    if args.compile_cache_in and bench.cuda:
        load_compile_cache(args.compile_cache_in)
        results["compile_cache"] = f"loaded from {Path(args.compile_cache_in).name} (an earlier run's compile)"
    if bench.cuda:
        results["attention_backends"] = attention_backends(bench)
        log("SDPA backends:", json.dumps(results["attention_backends"]))

    results["bf16_peak_tflops"] = bf16_peak_tflops(results["gpu"])
    results["bf16_matmul_tflops_measured"] = bf16_matmul_tflops()
    log("bf16 peak (datasheet)", results["bf16_peak_tflops"], "measured GEMM", results["bf16_matmul_tflops_measured"])
    results["unet_flops_per_step"] = count_unet_flops(bench)
    results["unet_tflop_per_step"] = round(results["unet_flops_per_step"] / 1e12, 2)
    log("UNet TFLOP per step (batch 2):", results["unet_tflop_per_step"])
    save()

    samples: dict[str, Image.Image] = {}
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        budget = bench.estimated_s.get(config, 120) * (0.05 if bench.smoke else 1)
        if time_left(bench) < budget:
            status = f"not measured: needs ~{budget:.0f} s, {time_left(bench):.0f} s left"
            results["configs"][config] = {"status": status}
            log(config, status)
            save()
            continue
        if config == "F":
            allow_torchao()
        try:
            log("measuring", config)
            measure(bench, config, results, samples)
        except Exception as exc:  # one broken config must not lose the others' numbers
            results["configs"][config] = {"status": f"failed: {type(exc).__name__}: {str(exc)[:300]}"}
            free(None)
        log(config, json.dumps(results["configs"][config]))
        save()

    compare_samples(results, samples)
    _measure_cold_starts(bench, results["configs"])
    save()
    print_table(results)
    log("wrote", out_file)


if __name__ == "__main__":
    main()
