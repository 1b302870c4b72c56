"""Enrollment speed with warm models: `python -m benchmarks.enroll` (CPU by default, no GPU needed).

Enrolls a folder of real photos (by default the 20 LFW photos of George W. Bush in
../shared/testdata/faces) through the same service the worker runs, after the face models
are loaded and have run once, and prints the seconds in total and per photo. Goal: at most
15 s for 15 photos on a 2-core CPU. Runs against a throwaway SQLite database and media
folder, so it never touches your data.

    python -m benchmarks.enroll [--photos DIR] [--count N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DEFAULT_PHOTOS = SHARED / "testdata" / "faces" / "george_w_bush"
TEST_MODELS = SHARED / "models" / "insightface"
GOAL_SECONDS_PER_15 = 15.0


def _configure(workdir: Path) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "twinsite.settings")
    os.environ["DATABASE_URL"] = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ["MEDIA_ROOT"] = str(workdir / "media")
    os.environ.setdefault("LOG_LEVEL", "warning")
    os.environ.setdefault("SELFIE_MIN_SIDE", "200")  # LFW photos are 250x250
    if "INSIGHTFACE_ROOT" not in os.environ and (TEST_MODELS / "models" / "scrfd500m_mbf").is_dir():
        os.environ["INSIGHTFACE_ROOT"] = str(TEST_MODELS)
        os.environ["INSIGHTFACE_PACK"] = "scrfd500m_mbf"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of photos of one person")
    parser.add_argument("--count", type=int, default=20, help="how many photos of the folder to enroll")
    parser.add_argument("--repeat", type=int, default=3, help="timed enrollments (the median is reported)")
    args = parser.parse_args(argv)
    paths = sorted(p for p in args.photos.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
    paths = paths[: args.count]
    if not paths:
        print(f"no photos in {args.photos}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="twinsite-bench-") as tmp:
        workdir = Path(tmp)
        _configure(workdir)
        import django

        django.setup()
        from django.conf import settings
        from django.core.files import File
        from django.core.management import call_command

        from accounts.models import User
        from twins import faces, services
        from twins.models import Twin

        call_command("migrate", verbosity=0)
        settings.TWIN_MIN_PHOTOS = min(settings.TWIN_MIN_PHOTOS, len(paths))
        owner = User.objects.create_user(username="bench", password=None)
        twin = services.create_twin(owner=owner, name="Benchmark")

        started = time.perf_counter()
        for path in paths:
            with path.open("rb") as fh:
                services.add_selfies(twin=twin, uploads=[File(fh, name=path.name)])
        intake_s = time.perf_counter() - started

        started = time.perf_counter()
        info = faces.warm_up()
        load_s = time.perf_counter() - started

        runs: list[float] = []
        result = None
        for _ in range(max(1, args.repeat)):
            services.start_enrollment(twin=twin, enqueue=False)
            started = time.perf_counter()
            result = services.enroll_twin(twin=twin)
            runs.append(time.perf_counter() - started)
        twin.refresh_from_db()

    assert result is not None
    total = statistics.median(runs)
    per_photo = total / len(paths)
    print(f"face models : {info.pack} ({info.dim}-d) on {', '.join(info.providers)}; loaded+warmed in {load_s:.2f} s")
    print(f"cpu         : {os.cpu_count()} cores")
    print(f"photos      : {len(paths)} from {args.photos} -> {result.accepted} accepted, twin {twin.status}")
    print(f"intake      : {intake_s:.2f} s ({intake_s / len(paths) * 1000:.0f} ms/photo, web-side checks)")
    print(
        f"enrollment  : {total:.2f} s total, {per_photo * 1000:.0f} ms/photo "
        f"(median of {len(runs)}: {', '.join(f'{r:.2f}' for r in runs)} s)"
    )
    projected = per_photo * 15
    verdict = "OK" if projected <= GOAL_SECONDS_PER_15 else "TOO SLOW"
    print(f"15 photos   : {projected:.2f} s projected (goal <= {GOAL_SECONDS_PER_15:.0f} s) {verdict}")
    return 0 if result.status == Twin.Status.READY else 1


if __name__ == "__main__":
    sys.exit(main())
