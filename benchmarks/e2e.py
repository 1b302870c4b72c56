"""End-to-end benchmark: the real product, driven through its services, with a real `gpu` worker.

One SQLite database and media folder of its own; a user and a twin made by twins.services;
20 real photos of one person uploaded through add_selfies (the web side's checks); a REAL
`manage.py qcluster` subprocess with Q_CLUSTER_NAME=gpu (it warms its models in post_spawn,
generation/apps.py); start_enrollment, then submit_generation for 1 and for 4 images. Each
job's own records (created/started/finished, stage_seconds) give the figures:

    queue wait        created_at -> started_at (the worker's pickup)
    pipeline          stage_seconds["generate"]  (diffusers, all steps, VAE decode)
    identity scoring  stage_seconds["score"]     (face detection + cosine on every output)
    encode + store    stage_seconds["save"]      (PNG encoding, storage, image rows)
    total             created_at -> finished_at, and submit -> `succeeded` seen here

The worker is started twice: the first start compiles (or finds the compile cache given with
--compile-cache-in), the second is the cold start of a restarted worker with a warm compile
cache (process start -> "generation pipeline warm" in its log). The jobs run on both.

    python -m benchmarks.e2e --smoke                   # CPU, tiny model: checks the harness (about a minute)
    python -m benchmarks.e2e --model-size full         # GPU: see benchmarks/E2E_GPU.md

Writes <out-dir>/<gpu-name>-e2e-<date>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from datetime import date
from pathlib import Path
from typing import Any

from benchmarks.common import NEGATIVE_PROMPT, PROMPT, log

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
WARM = "generation pipeline warm on"  # generation/apps.py, once the gpu worker's post_spawn warm-up is done
WARM_FAILED = "generation warm-up failed"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    faces = SHARED / "testdata" / "faces" / "george_w_bush"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    # sdxl reads the folder where fetch_models puts real weights but takes only 512-d (buffalo_l) faces;
    # tiny loads the same folder through the same code from TWIN_MODELS_DIR/tiny, for any face pack.
    add("--backend", choices=["tiny", "sdxl"], default="tiny", help="TWIN_BACKEND (see the source)")
    add("--model-size", choices=["tiny", "full"], default="full", help="random-weight folder to build if absent")
    add("--model-dir", type=Path, help="the random-weight folder (default MODELS_DIR/random-SIZE)")
    add("--models-dir", type=Path, default=Path("/tmp/twinsite-e2e-models"), help="TWIN_MODELS_DIR, compile cache")
    add("--data-dir", type=Path, default=Path("/tmp/twinsite-e2e-data"), help="database, media; emptied first")
    add("--photos-dir", type=Path, default=faces, help="photos of ONE person")
    add("--photos", type=int, default=20, help="how many of them to enroll")
    add("--face-root", type=Path, default=SHARED / "models" / "insightface", help="INSIGHTFACE_ROOT")
    add("--face-pack", default="scrfd500m_mbf", help="INSIGHTFACE_PACK")
    add("--image-size", type=int, default=1024)
    add("--steps", type=int, default=30)
    add("--preset", choices=["default", "fast", "eager"], default="default", help="TWIN_PERF_PRESET")
    add("--jobs", default="1,4", help="images per job, in order, on every worker start")
    add("--worker-starts", type=int, default=2, help="the 2nd is a cold start with a warm compile cache")
    add("--compile-cache-in", type=Path, help="a --compile-cache-out tarball of an earlier run")
    add("--compile-cache-out", type=Path, help="write the worker's compile cache here (.tar.xz)")
    add("--timeout-s", type=float, default=900, help="longest wait for one warm-up, enrollment or job")
    add("--deadline-s", type=float, default=0, help="start no further worker after this many seconds (0: none)")
    add("--out-dir", type=Path, default=Path(os.environ.get("OUT", ROOT / "benchmarks" / "results")))
    add("--log-dir", type=Path, help="where the worker logs go (default: the data dir)")
    add("--smoke", action="store_true", help="CPU check: tiny model, 64 px, 3 steps")
    args = parser.parse_args(argv)
    if args.smoke:
        args.backend, args.model_size, args.image_size, args.steps = "tiny", "tiny", 64, 3
    args.model_dir = args.model_dir or args.models_dir / f"random-{args.model_size}"
    args.log_dir = args.log_dir or args.data_dir
    for name in ("model_dir", "models_dir", "data_dir", "photos_dir", "face_root", "out_dir", "log_dir"):
        setattr(args, name, getattr(args, name).resolve())  # the worker runs in the repository root
    return args


def configure(args: argparse.Namespace) -> None:
    """The environment of this process and of the worker (tests.workers.Worker copies os.environ)."""
    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)  # its own folder: a fresh database and media every run
    args.data_dir.mkdir(parents=True)
    args.log_dir.mkdir(parents=True, exist_ok=True)
    args.models_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "twinsite.settings",
            "TWINSITE_DATA_DIR": str(args.data_dir),
            "DATABASE_URL": f"sqlite:///{args.data_dir / 'e2e.sqlite3'}",
            "MEDIA_ROOT": str(args.data_dir / "media"),
            "Q_BROKER": "orm",
            "Q_GPU_WORKERS": "1",
            "TWIN_BACKEND": args.backend,
            "TWIN_MODELS_DIR": str(args.models_dir),
            "TORCHINDUCTOR_CACHE_DIR": str(compile_cache_dir(args)),
            "TWIN_IMAGE_SIZE": str(args.image_size),
            "TWIN_PERF_PRESET": args.preset,
            "TWIN_WARM_UP": "true",
            "GENERATION_DEFAULT_STEPS": str(args.steps),
            "INSIGHTFACE_ROOT": str(args.face_root),
            "INSIGHTFACE_PACK": args.face_pack,
            "SELFIE_MIN_SIDE": "250",  # the LFW photos are 250x250
            "LOG_FORMAT": "text",
            "LOG_LEVEL": "warning",  # this process; the worker logs at info (its "warm" line is one)
        }
    )
    sys.path.insert(0, str(ROOT))


def manage(*command: str, timeout: float) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, check=True, timeout=timeout)
    return time.monotonic() - started


def install_models(args: argparse.Namespace, *, id_dim: int) -> dict[str, Any]:
    """Build the random-weight folder if needed (build_tiny_models), then put it where the backend looks."""
    from django.conf import settings

    from generation import model_builder

    record: dict[str, Any] = {"folder": str(args.model_dir), "size": args.model_size, "id_embedding_dim": id_dim}
    adapter = args.model_dir / model_builder.ADAPTER_SUBDIR / model_builder.adapter_weight_name(args.model_size, id_dim)
    if model_builder.is_complete(args.model_dir) and adapter.is_file():
        record["build_s"] = None  # reused
    else:
        device = ["--device", "cuda"] if args.model_size == "full" else []
        record["build_s"] = round(
            manage(
                "build_tiny_models",
                "--size",
                args.model_size,
                "--path",
                str(args.model_dir),
                "--dim",
                str(id_dim),
                *device,
                timeout=1800,
            ),
            1,
        )
    if args.backend == "tiny":
        links = {Path(settings.TWIN_MODELS_DIR) / "tiny": args.model_dir}
    else:  # what `manage.py fetch_models` leaves: TWIN_MODELS_DIR/<Hugging Face id>
        models = Path(settings.TWIN_MODELS_DIR)
        links = {
            models / settings.TWIN_BASE_MODEL: args.model_dir / model_builder.BASE_SUBDIR,
            models / settings.TWIN_IP_ADAPTER / settings.TWIN_IP_ADAPTER_WEIGHT: adapter,
            models / settings.TWIN_IMAGE_ENCODER: args.model_dir / model_builder.IMAGE_ENCODER_SUBDIR,
        }
    for link, target in links.items():
        if link.resolve() == target.resolve():
            continue
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            raise SystemExit(f"{link} exists and is not the benchmark's model; use another --models-dir")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target.resolve(), target_is_directory=target.is_dir())
    record["layout"] = {str(k): str(v) for k, v in links.items()}
    return record


def compile_cache_dir(args: argparse.Namespace) -> Path:
    return args.models_dir / "torch-compile-cache"  # generation/pipeline/presets.py _use_persistent_compile_cache


def load_compile_cache(path: Path, *, into: Path) -> None:
    """A --compile-cache-out tarball, or a torch mega-cache (.xz) of benchmarks.generation / multi_gpu.

    Loading the mega-cache here writes its artifacts into TORCHINDUCTOR_CACHE_DIR, the worker's cache
    on disk (it hits only for the same graphs: same id-embedding size, image size and batch shapes).
    """
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as archive:
            archive.extractall(into, filter="data")
    else:
        from benchmarks.compile_cache import load_compile_cache as load_mega_cache

        load_mega_cache(path)


def cache_files(args: argparse.Namespace) -> int:
    folder = compile_cache_dir(args)
    return sum(1 for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else 0


def enroll(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    from django.core.files import File

    from accounts.models import User
    from twins import services
    from twins.models import Twin

    photos = sorted(p for p in args.photos_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    photos = photos[: args.photos]
    if len(photos) < args.photos:
        raise SystemExit(f"{args.photos_dir} holds {len(photos)} photos; --photos asks for {args.photos}")
    owner = User.objects.create_user(username="e2e", password=None)
    twin = services.create_twin(owner=owner, name="E2E benchmark")
    t0 = time.monotonic()
    handles = [path.open("rb") for path in photos]
    try:  # django File objects satisfy twins.intake.Upload, as in enroll_folder
        upload = services.add_selfies(twin=twin, uploads=[File(fh, name=fh.name) for fh in handles])
    finally:
        for fh in handles:
            fh.close()
    intake_s = time.monotonic() - t0
    t0 = time.monotonic()
    services.start_enrollment(twin=twin)
    wait(
        lambda: Twin.objects.get(pk=twin.pk).status in (Twin.Status.READY, Twin.Status.FAILED),
        timeout=args.timeout_s,
        what="the enrollment",
    )
    wall_s = time.monotonic() - t0
    twin.refresh_from_db()
    if twin.status != Twin.Status.READY:
        raise SystemExit(f"the twin is {twin.status}: {twin.status_message}")
    summary = twin.quality_summary
    log(f"enrolled {summary['accepted']}/{summary['photos']} photos in {summary['seconds']} s (worker)")
    return twin, {
        "photos": len(photos),
        "photos_dir": str(args.photos_dir),
        "accepted_at_upload": len(upload.accepted),
        "accepted": summary["accepted"],
        "rejected": summary["rejected"],
        "reasons": summary["reasons"],
        "face_pack": summary["model"],
        "embedding_dim": summary["dim"],
        "intake_s": round(intake_s, 2),
        "worker_s": summary["seconds"],
        "submit_to_ready_s": round(wall_s, 2),
    }


def run_job(args: argparse.Namespace, *, twin: Any, images: int, seed: int) -> dict[str, Any]:
    from generation import services
    from generation.models import GenerationJob

    t0 = time.monotonic()
    job = services.submit_generation(
        owner=twin.owner,
        twin=twin,
        prompt=PROMPT,
        negative_prompt=NEGATIVE_PROMPT,
        num_images=images,
        seed=seed,
        steps=args.steps,
    )
    wait(lambda: GenerationJob.objects.get(pk=job.pk).is_finished, timeout=args.timeout_s, what=f"job {job.pk}")
    wall_s = time.monotonic() - t0
    job.refresh_from_db()
    if job.status != GenerationJob.Status.SUCCEEDED:
        raise SystemExit(f"job {job.pk} {job.status}: {job.error}")
    stages = job.stage_seconds
    total = (job.finished_at - job.created_at).total_seconds()
    queue = (job.started_at - job.created_at).total_seconds()
    return {
        "job": job.pk,
        "images": images,
        "steps": job.steps,
        "size": f"{job.width}x{job.height}",
        "queue_wait_s": round(queue, 3),
        "prepare_s": stages.get("prepare"),
        "pipeline_s": stages.get("generate"),
        "identity_scoring_s": stages.get("score"),
        "encode_and_store_s": stages.get("save"),
        "other_s": round(total - queue - sum(stages.values()), 3),  # claim, heartbeats, final commit
        "total_s": round(total, 3),
        "submit_to_done_s": round(wall_s, 3),
        "identity_scores": [image.identity_score for image in job.images.all()],
        "score_notes": sorted({image.score_note for image in job.images.all() if image.score_note}),
        "model_versions": job.model_versions,
    }


def wait(condition: Any, *, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def start_worker(args: argparse.Namespace, number: int) -> tuple[Any, dict[str, Any]]:
    from tests.workers import Worker

    record: dict[str, Any] = {"start": number, "compile_cache_files_at_start": cache_files(args)}
    t0 = time.monotonic()
    worker = Worker(cluster="gpu", extra_env={"LOG_LEVEL": "info"}, log_path=args.log_dir / f"worker-{number}.log")

    def warm() -> bool:
        text = worker.log_path.read_text(errors="replace")
        if WARM_FAILED in text or worker.process.poll() is not None:
            raise SystemExit(f"worker {number} did not warm up; its log ends:\n{worker.output()}")
        return WARM in text

    try:
        wait(warm, timeout=args.timeout_s, what=f"worker {number} to warm up", interval=0.05)
    except SystemExit:
        worker.stop()
        raise
    record["cold_start_s"] = round(time.monotonic() - t0, 2)  # process start -> warm, ready for a job
    text = worker.log_path.read_text(errors="replace")
    for key, pattern in (
        ("pipeline_load_s", r"loaded \S+ pipeline .*? in ([\d.]+) s"),
        ("pipeline_warm_up_s", r"generation pipeline warm in ([\d.]+) s"),
    ):
        found = re.findall(pattern, text)
        record[key] = float(found[-1]) if found else None
    log(
        f"worker {number} warm in {record['cold_start_s']} s "
        f"(compile cache: {record['compile_cache_files_at_start']} files at start)",
    )
    return worker, record


def ask_device_name() -> subprocess.Popen:
    """The card's name, from a process of its own (this one never touches the GPU: it would hold memory there)."""
    code = "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')"
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def print_table(results: dict[str, Any]) -> None:
    enrollment = results["enrollment"]
    print(
        f"\nenrollment: {enrollment['accepted']}/{enrollment['photos']} photos, worker {enrollment['worker_s']} s, "
        f"submit -> ready {enrollment['submit_to_ready_s']} s, upload checks {enrollment['intake_s']} s"
    )
    for start in results["worker_starts"]:
        if "skipped" in start:
            print(f"worker start {start['start']}: skipped, {start['skipped']}")
            continue
        print(
            f"worker start {start['start']}: cold start {start['cold_start_s']} s "
            f"(compile cache files at start: {start['compile_cache_files_at_start']})"
        )
    columns = (
        "start",
        "images",
        "queue_wait_s",
        "prepare_s",
        "pipeline_s",
        "identity_scoring_s",
        "encode_and_store_s",
        "other_s",
        "total_s",
        "submit_to_done_s",
    )
    print(" ".join(f"{c.removesuffix('_s'):>16}" for c in columns))
    for job in results["jobs"]:
        print(" ".join(f"{job[c]!s:>16}" for c in columns))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    configure(args)
    import django

    django.setup()
    from django.core.management import call_command

    from generation.pipeline import SDXL_ID_EMBEDDING_DIM
    from twins import faces

    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)  # as twinsite.sh does: django-q2 keeps its stats there
    face_info = faces.model_info()  # the adapter is built for this size: it is what the twin carries
    if args.backend == "sdxl" and face_info.dim != SDXL_ID_EMBEDDING_DIM:
        raise SystemExit(
            f"--backend sdxl takes {SDXL_ID_EMBEDDING_DIM}-d faces (buffalo_l); {face_info.pack} gives "
            f"{face_info.dim}-d: use --backend tiny, which loads the same folder through the same code"
        )
    results: dict[str, Any] = {
        "gpu": "unknown",
        "date": date.today().isoformat(),
        "command": " ".join(["python -m benchmarks.e2e", *sys.argv[1:]]),
        "setup": {
            "backend": args.backend,
            "image": args.image_size,
            "steps": args.steps,
            "preset": args.preset,
            "face_pack": face_info.pack,
            "face_dim": face_info.dim,
            "face_providers": list(face_info.providers),
            "queue": "django-q2, ORM broker on SQLite; `manage.py qcluster`, Q_CLUSTER_NAME=gpu, 1 worker",
        },
        "worker_starts": [],
        "jobs": [],
    }
    asked = ask_device_name()
    results["models"] = install_models(args, id_dim=face_info.dim)
    log("models ready:", results["models"]["layout"])
    results["gpu"] = asked.communicate(timeout=300)[0].strip() or "unknown"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    out_file = args.out_dir / f"{results['gpu'].replace(' ', '-')}-e2e-{results['date']}.json"

    def save() -> None:  # after every step: a run cut short still leaves its figures
        results["wall_s"] = round(time.monotonic() - started, 1)
        out_file.write_text(json.dumps(results, indent=1, default=str) + "\n")

    if args.compile_cache_in:
        load_compile_cache(args.compile_cache_in, into=args.models_dir)
        results["setup"]["compile_cache_in"] = args.compile_cache_in.name
    seed = 1000
    worker = None
    try:
        for number in range(1, args.worker_starts + 1):
            spent = time.monotonic() - started
            if number > 1 and args.deadline_s and spent > args.deadline_s:
                results["worker_starts"].append({"start": number, "skipped": f"past --deadline-s ({spent:.0f} s)"})
                break
            worker, record = start_worker(args, number)
            results["worker_starts"].append(record)
            if number == 1:
                twin, results["enrollment"] = enroll(args)
            save()
            for images in (int(n) for n in args.jobs.split(",")):
                seed += 10
                job = run_job(args, twin=twin, images=images, seed=seed)
                results["jobs"].append({"start": number, **job})
                save()
                log(
                    f"job of {images} image(s): {job['submit_to_done_s']} s submit -> done, "
                    f"pipeline {job['pipeline_s']} s",
                )
            worker.stop()
            worker = None
    finally:
        if worker is not None:
            worker.stop()
        save()
    starts = [s for s in results["worker_starts"] if "cold_start_s" in s]
    results["cold_start_s"] = {  # the 1st compiles unless a cache came in; later ones find the cache warm
        "first_start": starts[0]["cold_start_s"],
        "restart_warm_compile_cache": starts[-1]["cold_start_s"] if len(starts) > 1 else None,
    }
    if args.compile_cache_out and compile_cache_dir(args).is_dir():
        with tarfile.open(args.compile_cache_out, "w:xz") as archive:
            archive.add(compile_cache_dir(args), arcname=compile_cache_dir(args).name)
    save()
    print_table(results)
    log("wrote", out_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
