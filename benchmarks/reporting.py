"""The generation benchmark's results: the run's description, image comparisons, the printed table."""

from __future__ import annotations

import sys
from datetime import date
from typing import TYPE_CHECKING, Any

from benchmarks.generation_configs import LOW_STRENGTH, Bench

if TYPE_CHECKING:
    from PIL import Image


def describe_run(bench: Bench) -> dict[str, Any]:
    """The results' header: the GPU, library versions and the setup every config ran with."""
    import diffusers
    import torch
    import transformers

    return {
        "gpu": torch.cuda.get_device_name(0) if bench.cuda else "cpu",
        "date": date.today().isoformat(),
        "versions": {
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "python": sys.version.split()[0],
            "cuda": torch.version.cuda,
        },
        "setup": {
            "size": bench.size,
            "image": bench.image_side,
            "steps": bench.steps,
            "guidance": 5.0,
            "faceid": "plus v2, scale 0.8",
            "scheduler": "DPMSolverMultistepScheduler (T: DDIM trailing, 8 steps)",
            "runs": bench.args.runs,
            "timing": "end-to-end run_pipeline (text + image encoders, denoising, VAE decode, PIL); median",
        },
        "configs": {},
    }


def image_difference(a: Image.Image, b: Image.Image) -> dict[str, float]:
    import numpy as np

    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return {
        "mean_abs_pixel_diff": round(float(np.mean(np.abs(x - y))), 3),
        "psnr_db": round(float(10 * np.log10(255**2 / mse)), 2) if mse > 0 else float("inf"),
    }


def compare_samples(results: dict[str, Any], samples: dict[str, Image.Image]) -> None:
    """Each config's image against B's (same seed), and each at two identity strengths."""
    configs = results["configs"]
    if "B" in samples:
        for config in ("C", "F", "R", "A", "T"):
            if config in samples:
                configs[config]["vs_B_same_seed"] = image_difference(samples["B"], samples[config])
            low = f"{config}@{LOW_STRENGTH}"
            if low in samples and f"B@{LOW_STRENGTH}" in samples:
                configs[config][f"vs_B_same_seed_strength_{LOW_STRENGTH}"] = image_difference(
                    samples[f"B@{LOW_STRENGTH}"], samples[low]
                )
                configs[config][f"strength_{LOW_STRENGTH}_vs_0.8"] = image_difference(samples[config], samples[low])
    if "C" in samples and "F" in samples:
        configs["F"]["vs_C_same_seed"] = image_difference(samples["C"], samples["F"])
    noise = configs["A"].get("vs_B_same_seed") if "A" in samples and "B" in samples else None
    results["note_on_noise"] = (
        "A vs B (both fp16, same weights, sliced vs unsliced attention) shows the "
        f"numeric noise floor of fp16 SDXL: {noise}"
    )


def print_table(results: dict[str, Any]) -> None:
    header = (
        f"{'config':6} {'s/job 1':>8} {'s/job 4':>8} {'UNet ms/step':>13} {'VAE ms':>7} {'TFLOP/s':>8} "
        f"{'MFU':>6} {'peak GB 1/4':>12} {'cold s':>7}"
    )
    print(header)
    for name, rec in results["configs"].items():
        if rec.get("status") != "ok":
            print(f"{name:6} {rec.get('status')}")
            continue
        print(
            f"{name:6} {rec['seconds_per_job_1']:8.2f} {rec.get('seconds_per_job_4', float('nan')):8.2f} "
            f"{rec['unet_ms_per_step']:13.1f} {rec['vae_ms']:7.1f} {rec['unet_tflops']:8.1f} "
            f"{rec.get('mfu', float('nan')):6.3f} "
            f"{rec['peak_gb_1']!s:>5}/{rec.get('peak_gb_4')!s:<6} {rec.get('cold_start_s')!s:>7}"
        )
