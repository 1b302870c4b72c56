"""The GPU benchmarks' code paths, run on a CPU with the tiny model (`--smoke`).

They only run for real on a lent GPU; this keeps them from rotting between those runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run_benchmark(module: str, tmp_path: Path, *extra: str) -> list[Path]:
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHONPATH": str(REPO_ROOT)}
    subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--model-dir", str(tmp_path / "model"), *extra],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        timeout=600,
        capture_output=True,
    )
    return sorted(out.glob("*.json"))


def test_generation_benchmark_measures_every_config(tmp_path):
    (result,) = run_benchmark("benchmarks.generation", tmp_path, "--runs", "1", "--cache-dir", str(tmp_path / "c"))
    data = json.loads(result.read_text())
    assert set(data["configs"]) == {"B", "C", "A", "F"}
    for name, config in data["configs"].items():
        assert config["status"] == "ok", name
        for key in ("seconds_per_job_1", "seconds_per_job_4", "unet_ms_per_step", "vae_ms", "cold_start_s"):
            assert config[key] > 0, (name, key)
    assert data["configs"]["C"]["vs_B_same_seed"]["mean_abs_pixel_diff"] < 1.0  # same model, CPU: same picture
    assert data["configs"]["C"]["strength_0.3_vs_0.8"]["mean_abs_pixel_diff"] > 0.5


def test_multi_gpu_benchmark_runs_two_workers_from_one_queue(tmp_path):
    (result,) = run_benchmark("benchmarks.multi_gpu", tmp_path, "--cache-dir", str(tmp_path / "c"))
    data = json.loads(result.read_text())
    assert data["phases"]["1_gpu"]["jobs_per_worker"] == {"0": 6}
    both = data["phases"]["2_gpus"]
    assert sum(both["jobs_per_worker"].values()) == 6 and both["images"] == 24
    assert all(worker["first_job_done_s"] for worker in data["workers"].values())


def test_e2e_benchmark_times_every_stage_on_a_real_gpu_worker(tmp_path, faces_dir, face_models):
    extra = ("--models-dir", str(tmp_path / "models"), "--data-dir", str(tmp_path / "data"))
    (result,) = run_benchmark("benchmarks.e2e", tmp_path, *extra)
    data = json.loads(result.read_text())
    enrollment = data["enrollment"]
    assert enrollment["photos"] == 20 and enrollment["accepted"] >= 15
    assert 0 < enrollment["worker_s"] <= enrollment["submit_to_ready_s"]
    assert [start["cold_start_s"] > 0 for start in data["worker_starts"]] == [True, True]
    assert [(job["start"], job["images"]) for job in data["jobs"]] == [(1, 1), (1, 4), (2, 1), (2, 4)]
    for job in data["jobs"]:
        assert len(job["identity_scores"]) == job["images"]
        assert job["model_versions"]["backend"] == "tiny"  # written by the worker that ran it
        for key in ("queue_wait_s", "pipeline_s", "identity_scoring_s", "encode_and_store_s", "total_s"):
            assert job[key] > 0, (job["job"], key)
        stages = job["queue_wait_s"] + job["prepare_s"] + job["pipeline_s"] + job["identity_scoring_s"]
        assert stages + job["encode_and_store_s"] <= job["total_s"] <= job["submit_to_done_s"] + 1
