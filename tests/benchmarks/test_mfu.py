"""Honest benchmark figures: MFU against the running GPU's own peak, and A's reloads said plainly."""

from __future__ import annotations

from benchmarks.generation import _add_mfu, parse_args
from benchmarks.generation_configs import RECIPE_BY_CONFIG, bf16_peak_tflops


def test_the_peak_is_the_running_gpus_and_unknown_gpus_get_no_mfu():
    assert bf16_peak_tflops("NVIDIA H200") == 989.4
    assert bf16_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert bf16_peak_tflops("NVIDIA B200") == 2250.0
    assert bf16_peak_tflops("cpu") is None
    record = {"unet_tflops": 400.0}
    _add_mfu(record, {"bf16_peak_tflops": None, "bf16_matmul_tflops_measured": None})
    assert "mfu" not in record  # no H100 constant on a GPU it does not describe


def test_mfu_is_given_against_the_peak_and_against_the_measured_gemm_rate():
    record = {"unet_tflops": 400.0, "unet_tflops_batch_4_images": 420.0}
    _add_mfu(record, {"bf16_peak_tflops": 2250.0, "bf16_matmul_tflops_measured": 800.0})
    assert record["mfu"] == round(400 / 2250, 3)
    assert record["mfu_vs_measured_matmul"] == 0.5
    assert record["mfu_vs_measured_matmul_batch_4_images"] == round(420 / 800, 3)


def test_the_turbo_config_runs_the_turbo_recipe_and_one_image_runs_can_be_asked_for():
    assert RECIPE_BY_CONFIG["T"] == "turbo"
    args = parse_args(["--configs", "B,C,T", "--images", "1", "--no-compile-cache-out"])
    assert args.images == "1" and args.no_compile_cache_out
