"""Provision every model the worker needs, ahead of any job: the face pack and the sdxl weights.

Jobs never download (generation/pipeline/ loads with local_files_only, twins/faces.py refuses a missing
pack); run this once per worker host, or bake its output into the worker image.

- The InsightFace face pack (INSIGHTFACE_PACK, see twins.face_pack.configured_pack) goes to
  INSIGHTFACE_ROOT/models/<pack>, from InsightFace's release: resumed, retried, sha256-checked,
  installed whole or not at all.
- Each sdxl weight set lands in TWIN_MODELS_DIR/<hugging face id>, where generation/pipeline/
  looks first.

`--from <folder or archive>` installs from local files instead (air-gapped sites), and
MODEL_MIRROR_URL points every download at an internal mirror (README: Models).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from twins import face_pack
from twinsite.downloads import DownloadError, ProgressReporter

FACE = "face"
# Only what StableDiffusionXLPipeline loads, in the fp16 variant (half the bytes of fp32;
# the worker runs in bf16/fp16 anyway). The repos also hold fp32, ONNX, OpenVINO and Flax copies.
_BASE_COMPONENTS_WITH_WEIGHTS = ("unet", "vae", "text_encoder", "text_encoder_2")
_BASE_PATTERNS = [
    "model_index.json",
    "scheduler/*.json",
    "tokenizer/*",
    "tokenizer_2/*",
    *(f"{component}/config.json" for component in _BASE_COMPONENTS_WITH_WEIGHTS),
    *(f"{component}/*fp16*.safetensors" for component in _BASE_COMPONENTS_WITH_WEIGHTS),
    *(f"{component}/*.safetensors.index.fp16.json" for component in _BASE_COMPONENTS_WITH_WEIGHTS),
]
_IMAGE_ENCODER_PATTERNS = ["config.json", "preprocessor_config.json", "model.safetensors"]


@dataclass(frozen=True)
class ModelSet:
    key: str
    label: str
    setting: str
    repo_id: str
    marker: str  # the file that shows the folder is there (what pipeline._resolve_folder looks for)
    filename: str | None = None  # one file (hf_hub_download), else a filtered snapshot
    patterns: tuple[str, ...] = ()
    revision: str = "main"  # a branch, tag or commit of the repository
    # False: the worker runs without it (check_models and readiness do not require it); the turbo LoRA.
    required: bool = True


# The recipe these sets serve: h94/IP-Adapter-FaceID's FaceID-Plus v2 SDXL demo, which loads
# `ip-adapter-faceid-plusv2_sdxl.bin` with image_encoder_path "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
# (the OpenCLIP ViT-H/14 the adapter was trained with) on an SDXL base. No commit is pinned by default:
# the project has not verified one; TWIN_*_REVISION pins one, and each job records the commit it ran.


def model_sets() -> list[ModelSet]:
    """The sdxl backend's weight sets, in the order they are fetched."""
    return [
        ModelSet(
            "base",
            "SDXL base model",
            "TWIN_BASE_MODEL",
            settings.TWIN_BASE_MODEL,
            "model_index.json",
            patterns=tuple(_BASE_PATTERNS),
            revision=settings.TWIN_BASE_MODEL_REVISION,
        ),
        ModelSet(
            "ip-adapter",
            "IP-Adapter FaceID Plus v2 weights",
            "TWIN_IP_ADAPTER",
            settings.TWIN_IP_ADAPTER,
            settings.TWIN_IP_ADAPTER_WEIGHT,
            filename=settings.TWIN_IP_ADAPTER_WEIGHT,
            revision=settings.TWIN_IP_ADAPTER_REVISION,
        ),
        ModelSet(
            "image-encoder",
            "CLIP image encoder",
            "TWIN_IMAGE_ENCODER",
            settings.TWIN_IMAGE_ENCODER,
            "config.json",
            patterns=tuple(_IMAGE_ENCODER_PATTERNS),
            revision=settings.TWIN_IMAGE_ENCODER_REVISION,
        ),
        # The `turbo` preset's distilled 8-step LoRA (ByteDance/Hyper-SD, openrail++): one file.
        ModelSet(
            "turbo-lora",
            "Hyper-SD 8-step CFG LoRA (turbo preset)",
            "TWIN_TURBO_LORA",
            settings.TWIN_TURBO_LORA,
            settings.TWIN_TURBO_LORA_WEIGHT,
            filename=settings.TWIN_TURBO_LORA_WEIGHT,
            required=False,  # without it a worker still serves `default` jobs; `turbo` ones fail naming this command
        ),
    ]


def hub_endpoint() -> str | None:
    """The Hugging Face endpoint to download from: MODEL_MIRROR_URL's, else huggingface_hub's default."""
    return f"{settings.MODEL_MIRROR_URL}/huggingface" if settings.MODEL_MIRROR_URL else None


def fetch_face_pack(*, stdout: object, retries: int = 4) -> Path:
    """Download and install the configured face pack with a progress display; its folder."""
    pack = face_pack.configured_pack()
    reporter = ProgressReporter(label=f"{pack}.zip", stream=stdout)
    try:
        return face_pack.fetch_configured_pack(progress=reporter, retries=retries)
    finally:
        reporter.close()


class Command(BaseCommand):
    # Worker-host setup: must work whatever state the web app's URLs or models are in.
    requires_system_checks: list[str] = []
    help = (
        "Download every model the worker needs (the InsightFace face pack into INSIGHTFACE_ROOT; SDXL base, "
        "IP-Adapter FaceID Plus v2, CLIP image encoder and the turbo LoRA into TWIN_MODELS_DIR), or install them "
        "from local files with --from. Jobs never download."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--only",
            action="append",
            choices=[FACE, *(item.key for item in model_sets())],
            help="fetch only this model set (repeatable)",
        )
        parser.add_argument(
            "--retries", type=int, default=4, help="more attempts after a network failure (default 4, with backoff)"
        )
        parser.add_argument(
            "--from",
            dest="source",
            metavar="FOLDER_OR_ARCHIVE",
            help="install from local files instead of downloading: a face pack folder or .zip/.tar(.gz), an "
            "InsightFace root (models/<pack>/), and/or a folder in the TWIN_MODELS_DIR layout (<org>/<repo>/...)",
        )

    def handle(self, *args: object, **options: object) -> None:
        only = list(options.get("only") or [])
        wanted = only or [FACE, *(item.key for item in model_sets())]
        if options.get("source"):
            self._install_from(Path(str(options["source"])).expanduser(), wanted, explicit=bool(only))
            return
        models_dir = Path(settings.TWIN_MODELS_DIR)
        items = [item for item in model_sets() if item.key in wanted]
        count = len(items) + (FACE in wanted)
        where = f"{models_dir}" + (f" and {face_pack.insightface_root()}" if FACE in wanted else "")
        self.stdout.write(f"Fetching {count} weight set(s) into {where}")
        failures: list[str] = []
        if FACE in wanted:
            failures += self._fetch_face(retries=max(0, int(options.get("retries") or 0)))
        for item in items:
            local = Path(item.repo_id).expanduser()
            if local.is_absolute() and local.exists():
                self.stdout.write(f"- {item.label}: {item.setting} is the local folder {local}; nothing to fetch")
                continue
            target = models_dir / item.repo_id
            self.stdout.write(f"- {item.label}: {item.repo_id} -> {target}")
            try:
                self._download(item, target)
            except Exception as exc:  # every failure is reported, then the command fails as a whole
                reason = _explain(exc)
                failures.append(f"{item.label} ({item.setting}={item.repo_id}): {reason}")
                self.stderr.write(self.style.ERROR(f"  failed: {reason}"))
            else:
                self.stdout.write(self.style.SUCCESS("  done"))
        if failures:
            raise CommandError(
                f"Could not fetch {len(failures)} of {count} weight set(s):\n  "
                + "\n  ".join(failures)
                + f"\nThe worker cannot run until they are in {where} (the sdxl weights may also be in the "
                "Hugging Face cache). Check the network (or set MODEL_MIRROR_URL, or install from local files "
                "with `manage.py fetch_models --from <folder or archive>`) and run `manage.py fetch_models` "
                "again; finished files are not downloaded twice and a broken download resumes."
            )
        self.stdout.write(self.style.SUCCESS(f"All models are in {where}."))

    def _fetch_face(self, *, retries: int) -> list[str]:
        pack = face_pack.configured_pack()
        folder = face_pack.pack_dir(pack=pack)
        label = f"InsightFace face pack (INSIGHTFACE_PACK={pack})"
        if face_pack.is_installed(pack=pack):
            self.stdout.write(f"- {label}: already in {folder}; nothing to fetch")
            face_pack.record_pack(root=face_pack.insightface_root(), pack=pack)
            return []
        url = face_pack.pack_url(pack=pack, mirror_url=settings.MODEL_MIRROR_URL)
        self.stdout.write(f"- {label}: {url} -> {folder}")
        try:
            fetch_face_pack(stdout=self.stdout, retries=retries)
        except (face_pack.FacePackError, DownloadError, OSError) as exc:
            self.stderr.write(self.style.ERROR(f"  failed: {exc}"))
            return [f"{label}: {exc}"]
        self.stdout.write(self.style.SUCCESS("  done"))
        return []

    def _download(self, item: ModelSet, target: Path) -> None:
        from huggingface_hub import hf_hub_download, snapshot_download

        endpoint = hub_endpoint()
        target.mkdir(parents=True, exist_ok=True)
        if item.filename:
            hf_hub_download(item.repo_id, item.filename, local_dir=target, endpoint=endpoint, revision=item.revision)
            return
        snapshot_download(
            item.repo_id,
            local_dir=target,
            allow_patterns=list(item.patterns),
            endpoint=endpoint,
            revision=item.revision,
        )
        if item.key == "base":
            # A base model published without fp16 files: take its full-precision safetensors.
            missing = [c for c in _BASE_COMPONENTS_WITH_WEIGHTS if not any((target / c).glob("*.safetensors"))]
            if missing:
                snapshot_download(
                    item.repo_id,
                    local_dir=target,
                    allow_patterns=[f"{c}/*.safetensors*" for c in missing],
                    endpoint=endpoint,
                    revision=item.revision,
                )
                missing = [c for c in missing if not any((target / c).glob("*.safetensors"))]
            if missing:
                raise FileNotFoundError(f"the repository has no safetensors weights for {', '.join(missing)}")
        elif item.key == "image-encoder" and not (target / "model.safetensors").is_file():
            raise FileNotFoundError("the repository has no model.safetensors")

    def _install_from(self, source: Path, wanted: list[str], *, explicit: bool) -> None:
        """Install whatever of `wanted` the local `source` holds; fail if it holds nothing asked for."""
        if not source.exists():
            raise CommandError(f"--from {source}: no such file or folder")
        self.stdout.write(f"Installing from {source}")
        installed: list[str] = []
        absent: list[str] = []
        failures: list[str] = []
        if FACE in wanted:
            root = face_pack.insightface_root()
            try:
                pack, folder = face_pack.install_from(source=source, root=root, pack=settings.INSIGHTFACE_PACK or None)
            except face_pack.NoPackInSource as exc:
                absent.append(f"InsightFace face pack ({exc})")
            except (face_pack.FacePackError, OSError) as exc:
                failures.append(f"InsightFace face pack: {exc}")
            else:
                face_pack.record_pack(root=root, pack=pack)
                installed.append(f"InsightFace face pack {pack} -> {folder} (now the default pack)")
        models_dir = Path(settings.TWIN_MODELS_DIR)
        for item in (item for item in model_sets() if item.key in wanted):
            folder = source / item.repo_id
            if source.is_file() or Path(item.repo_id).is_absolute() or not (folder / item.marker).is_file():
                absent.append(f"{item.label} (no {item.marker} in {folder})")
                continue
            try:
                target = _copy_folder(folder, models_dir / item.repo_id)
            except OSError as exc:
                failures.append(f"{item.label}: cannot copy {folder}: {exc}")
            else:
                installed.append(f"{item.label} -> {target}")
        for line in installed:
            self.stdout.write(self.style.SUCCESS(f"- {line}"))
        for line in absent:
            self.stdout.write(f"- not in {source}: {line}")
        if explicit and absent:
            failures += [f"not in {source}: {line}" for line in absent]
        if failures or not installed:
            problems = failures or ["nothing to install (expected a face pack, or <org>/<repo>/ weight folders)"]
            raise CommandError(f"--from {source}:\n  " + "\n  ".join(problems))


def _copy_folder(source: Path, target: Path) -> Path:
    """Copy a weight folder into place: whole, via a sibling temp folder and a rename."""
    if target.exists() and target.resolve() == source.resolve():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".installing-{target.name}-", dir=target.parent))
    try:
        # File by file with fresh permissions: a copy from read-only media must stay replaceable.
        for path in sorted(source.rglob("*")):
            copy = staging / target.name / path.relative_to(source)
            if path.is_dir():
                copy.mkdir(parents=True, exist_ok=True)
            else:
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, copy)
        if target.exists():
            aside = staging / ".replaced"
            target.rename(aside)
        (staging / target.name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _explain(exc: BaseException) -> str:
    """One line saying why a download failed, without a traceback."""
    from huggingface_hub import constants, errors

    endpoint = hub_endpoint() or constants.ENDPOINT
    detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    if isinstance(exc, errors.OfflineModeIsEnabled) or (
        isinstance(exc, errors.LocalEntryNotFoundError) and constants.HF_HUB_OFFLINE
    ):
        return "offline mode is on (HF_HUB_OFFLINE=1), so nothing can be downloaded; unset it and retry"
    if isinstance(exc, errors.GatedRepoError):
        return "the repository is gated: accept its terms on huggingface.co, then `hf auth login` or set HF_TOKEN"
    if isinstance(exc, errors.RepositoryNotFoundError):
        return "repository not found (misspelt id, or private without a token)"
    if isinstance(exc, errors.RevisionNotFoundError | errors.RemoteEntryNotFoundError):
        return f"file not found in the repository ({detail})"
    if isinstance(exc, errors.LocalEntryNotFoundError | ConnectionError | TimeoutError):
        return f"cannot reach the Hugging Face Hub at {endpoint} (no network?)"
    if type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
        return f"cannot reach the Hugging Face Hub at {endpoint} (no network?): {detail}"
    if isinstance(exc, PermissionError):
        return f"cannot write there: {detail}"
    return f"{type(exc).__name__}: {detail}"
