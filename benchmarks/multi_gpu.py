"""Multi-GPU throughput: one generation worker per GPU, fed from one queue of jobs.

Each worker is its own process pinned to one card with CUDA_VISIBLE_DEVICES (as in
production: one `qcluster` gpu worker per card), loads the full-size random-weight SDXL +
FaceID Plus v2 folder through generation/pipeline/ with the production preset
(TWIN_PERF_PRESET=default), warms its compiled UNet, then takes jobs of 4 images at 1024²
from a shared queue until it is empty.

Phase 1 runs the jobs on GPU 0 alone; phase 2 runs the same number of jobs on every GPU.
The worker for the other cards starts warming during phase 1, so its start-up is not
counted in either phase. Reports images per minute for 1 and N GPUs, the scaling, each
worker's cold start (process start → warm, → first job done) and peak GPU memory.

    python -m benchmarks.multi_gpu --jobs 32 [--compile-cache-in compile-cache.xz]
    python -m benchmarks.multi_gpu --smoke        # CPU: 2 workers on the tiny model

The queue here is a multiprocessing queue, not django-q2: the GPU machine has no database.
What is measured is what the broker does not change: per-card throughput and scaling.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path

from benchmarks.common import (
    ROOT,
    add_model_arguments,
    configure_environment,
    default_model_dir,
    portrait_request,
    reference_face,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=32)
    parser.add_argument("--images", type=int, default=4, help="images per job")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--gpus", type=int, default=0, help="how many cards (default: all visible)")
    add_model_arguments(parser)
    parser.add_argument("--out-dir", default=os.environ.get("OUT", str(ROOT / "benchmarks" / "results")))
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU, 2 workers")
    return parser.parse_args(argv)


def worker(index: int, gpu: str, args: argparse.Namespace, jobs, results, go) -> None:
    """One generation worker: warm up, then take jobs until the sentinel (None)."""
    started = time.perf_counter()
    os.environ["CUDA_VISIBLE_DEVICES"] = gpu
    configure_environment(cache_dir=args.cache_dir)
    import numpy as np
    import torch

    from benchmarks.compile_cache import load_compile_cache
    from generation import pipeline

    if args.compile_cache_in and not args.smoke:
        load_compile_cache(args.compile_cache_in)
    side = 64 if args.smoke else 1024
    embedding = np.random.default_rng(index).standard_normal(512).astype(np.float32)

    def request(seeds: list[int], steps: int) -> pipeline.ImageRequest:
        return portrait_request(
            seeds=seeds, steps=steps, side=side, embedding=embedding, reference_face=reference_face()
        )

    loaded = pipeline.load_pipeline(
        backend="random",
        id_embedding_dim=512,
        preset="default",
        model_dir=Path(args.model_dir),
        device="cpu" if args.smoke else "cuda",
    )
    # The jobs' batch shape only: it compiles (or loads from the cache) here, not in a job.
    pipeline.run_pipeline(loaded, request(list(range(args.images)), steps=2))
    cuda = torch.cuda.is_available() and not args.smoke
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    results.put({"kind": "ready", "worker": index, "name": name, "warm_s": time.perf_counter() - started})
    go.wait()
    first_done = None
    while True:
        job = jobs.get()
        if job is None:
            break
        job_started = time.perf_counter()
        images = pipeline.run_pipeline(loaded, request(job["seeds"], steps=args.steps))
        if cuda:
            torch.cuda.synchronize()
        now = time.perf_counter()
        first_done = first_done or now - started
        results.put(
            {"kind": "done", "worker": index, "job": job["id"], "images": len(images), "seconds": now - job_started}
        )
    peak = round(torch.cuda.max_memory_allocated() / 1e9, 2) if cuda else None
    results.put({"kind": "stopped", "worker": index, "peak_gb": peak, "first_job_done_s": first_done})


def record_ready(stats: dict, message: dict) -> None:
    stats["gpu"] = stats["gpu"] or message["name"]
    stats["workers"][message["worker"]].update(warm_s=round(message["warm_s"], 1))


def run_phase(name: str, count: int, images: int, jobs, results, stats: dict) -> dict:
    """Queue `count` jobs and wait for all of them; images per minute over the phase's wall time."""
    started = time.perf_counter()
    for number in range(count):
        jobs.put({"id": f"{name}-{number}", "seeds": [number * images + i for i in range(images)]})
    per_worker: dict[int, int] = {}
    seconds: list[float] = []
    while sum(per_worker.values()) < count:
        message = results.get(timeout=1800)
        if message["kind"] == "ready":
            record_ready(stats, message)
            continue
        per_worker[message["worker"]] = per_worker.get(message["worker"], 0) + 1
        seconds.append(message["seconds"])
    wall = time.perf_counter() - started
    return {
        "jobs": count,
        "images": count * images,
        "wall_s": round(wall, 2),
        "images_per_minute": round(count * images / wall * 60, 1),
        "median_job_s": round(statistics.median(seconds), 3),
        "jobs_per_worker": per_worker,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_environment(cache_dir=args.cache_dir)
    import torch

    from generation import model_builder

    if args.smoke:
        args.steps, args.jobs = 3, min(args.jobs, 6)
        gpus = ["", ""]
    else:
        visible = torch.cuda.device_count()
        gpus = [str(i) for i in range(args.gpus or visible)]
        if not gpus:
            print("no GPU visible (use --smoke on a CPU)", file=sys.stderr)
            return 2
    args.model_dir = args.model_dir or str(default_model_dir(smoke=args.smoke))
    model_dir = Path(args.model_dir)
    if not model_builder.is_complete(model_dir):
        # In a child process, so this one never holds GPU memory the workers need.
        builder = mp.get_context("spawn").Process(
            target=model_builder.build_random_pipeline_folder,
            kwargs={
                "path": model_dir,
                "size": "tiny" if args.smoke else "full",
                "id_embedding_dim": 512,
                "device": "cpu" if args.smoke else "cuda",
            },
        )
        builder.start()
        builder.join()
    stats: dict = {
        "gpu": None,
        "gpus": len(gpus),
        "date": date.today().isoformat(),
        "versions": {"torch": torch.__version__},
        "setup": {
            "jobs_per_phase": args.jobs,
            "images_per_job": args.images,
            "steps": args.steps,
            "image": 64 if args.smoke else 1024,
            "preset": "default (C)",
            "compile_cache": "loaded from an earlier run" if args.compile_cache_in else "empty at start",
        },
        "workers": {i: {"gpu": gpu} for i, gpu in enumerate(gpus)},
        "phases": {},
    }
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    def save() -> Path:
        name = (stats["gpu"] or "unknown").replace(" ", "-")
        out_file = out_dir / f"multi-gpu-{name}-x{len(gpus)}-{stats['date']}.json"
        out_file.write_text(json.dumps(stats, indent=1) + "\n")
        return out_file

    context = mp.get_context("spawn")
    jobs, results = context.Queue(), context.Queue()
    gates = [context.Event() for _ in gpus]
    processes = [
        context.Process(target=worker, args=(i, gpu, args, jobs, results, gates[i]), daemon=True)
        for i, gpu in enumerate(gpus)
    ]
    for process in processes:  # all start warming now; only worker 0 takes phase 1's jobs
        process.start()
    while "warm_s" not in stats["workers"][0]:
        record_ready(stats, results.get(timeout=1800))
    gates[0].set()
    stats["phases"]["1_gpu"] = run_phase("one", args.jobs, args.images, jobs, results, stats)
    print("1 GPU:", stats["phases"]["1_gpu"], flush=True)
    save()
    for i in range(1, len(gpus)):
        while "warm_s" not in stats["workers"][i]:
            record_ready(stats, results.get(timeout=1800))
        gates[i].set()
    if len(gpus) > 1:
        key = f"{len(gpus)}_gpus"
        stats["phases"][key] = run_phase("all", args.jobs, args.images, jobs, results, stats)
        one = stats["phases"]["1_gpu"]["images_per_minute"]
        stats["scaling"] = round(stats["phases"][key]["images_per_minute"] / one, 2)
        stats["scaling_efficiency"] = round(stats["scaling"] / len(gpus), 3)
        print(f"{len(gpus)} GPUs:", stats["phases"][key], "scaling", stats["scaling"], flush=True)
    for _ in processes:
        jobs.put(None)
    stopped = 0
    while stopped < len(processes):
        message = results.get(timeout=600)
        if message["kind"] == "stopped":
            stopped += 1
            stats["workers"][message["worker"]].update(
                peak_gb=message["peak_gb"],
                first_job_done_s=round(message["first_job_done_s"], 1) if message["first_job_done_s"] else None,
            )
    for process in processes:
        process.join(timeout=60)
    out_file = save()
    print(json.dumps(stats, indent=1))
    print("wrote", out_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
