"""`manage.py check_models [--fetch-missing]`: are the models this worker needs on disk?

Checks files only, never loading torch or onnxruntime, so it is quick enough to run before every
worker start (`./twinsite.sh start` does). Exit 0 when everything is there; otherwise one
paragraph saying what is missing, where it was looked for, and the command that fixes it, and
exit 1. `--fetch-missing` first downloads the face pack if that is what's missing; the sdxl
weights (several GB) are left to an explicit `fetch_models`.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generation.management.commands.fetch_models import fetch_face_pack, model_sets
from twins import face_pack
from twinsite.downloads import DownloadError

# Fewer attempts than fetch_models: this runs on every start, and an offline host should not wait long.
_START_UP_RETRIES = 1


class Command(BaseCommand):
    requires_system_checks: list[str] = []
    help = "Check that the face pack (and, for TWIN_BACKEND=sdxl, the generation weights) are on disk."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--fetch-missing", action="store_true", help="download the face pack first if it is missing"
        )

    def handle(self, *args: object, **options: object) -> None:
        fetch_error = ""
        if options.get("fetch_missing") and _face_problem() is not None:
            self.stdout.write(f"Face pack {face_pack.configured_pack()!r} missing; fetching it")
            try:
                fetch_face_pack(stdout=self.stdout, retries=_START_UP_RETRIES)
            except (face_pack.FacePackError, DownloadError, OSError) as exc:
                fetch_error = f" Fetching the face pack failed: {exc}."
        problems = [problem for problem in (_face_problem(), *_weight_problems()) if problem]
        if problems:
            raise CommandError(_paragraph(problems, fetch_error))
        self.stdout.write(self.style.SUCCESS(_summary()))


def _face_problem() -> str | None:
    pack = face_pack.configured_pack()
    folder = face_pack.pack_dir(pack=pack)
    missing = face_pack.missing_roles(folder)
    if not missing:
        return None
    what = " and ".join(f"a {role} model" for role in missing)
    return f"the face pack {pack!r} ({what}: no such .onnx file in {folder})"


def _weight_problems() -> list[str]:
    if settings.TWIN_BACKEND != "sdxl":
        return []  # the tiny model is built on first use; nothing to fetch
    from generation.pipeline import ModelWeightsMissing, _resolve_folder

    problems = []
    for item in (item for item in model_sets() if item.required):
        try:
            _resolve_folder(item.setting, item.repo_id, item.marker, Path(settings.TWIN_MODELS_DIR))
        except ModelWeightsMissing as exc:
            where = str(exc).removeprefix("Model weights not found at ").split(" for ", 1)[0]
            problems.append(f"the {item.label} ({item.setting}={item.repo_id}: looked for {where})")
    return problems


def _paragraph(problems: list[str], fetch_error: str) -> str:
    root = face_pack.insightface_root()
    return (
        f"Models missing: {'; '.join(problems)}.{fetch_error} "
        "Fix it on this host with `./twinsite.sh manage fetch_models` (downloads them; resumes if interrupted), "
        "or without internet `./twinsite.sh manage fetch_models --from <folder or archive>` (a face pack "
        "folder or .zip, an InsightFace root, or a copy of TWIN_MODELS_DIR), or set "
        "MODEL_MIRROR_URL=<internal mirror URL> and fetch from there, or point the worker at a pack that is "
        f"already on disk with INSIGHTFACE_ROOT=<folder holding models/<pack>/> INSIGHTFACE_PACK=<pack> "
        f"(now INSIGHTFACE_ROOT={root}, TWIN_MODELS_DIR={settings.TWIN_MODELS_DIR})."
    )


def _summary() -> str:
    pack = face_pack.configured_pack()
    folder = face_pack.pack_dir(pack=pack)
    roles = face_pack.pack_roles(folder)
    files = ", ".join(f"{name} ({role})" for role in face_pack.REQUIRED_ROLES for name in roles[role])
    weights = "sdxl weights present" if settings.TWIN_BACKEND == "sdxl" else "tiny backend: nothing to fetch"
    return f"Models present: face pack {pack!r} in {folder} ({files}); {weights}."
