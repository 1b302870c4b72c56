"""Download the sdxl backend's weights into TWIN_MODELS_DIR, ahead of any job.

Generation never downloads (pipeline.py loads with local_files_only); run this once per
GPU worker host, or bake its output into the worker image. Each weight set lands in
TWIN_MODELS_DIR/<hugging face id>, where generation/pipeline.py looks first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

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
    filename: str | None = None  # one file (hf_hub_download), else a filtered snapshot
    patterns: tuple[str, ...] = ()


def model_sets() -> list[ModelSet]:
    return [
        ModelSet(
            "base", "SDXL base model", "TWIN_BASE_MODEL", settings.TWIN_BASE_MODEL, patterns=tuple(_BASE_PATTERNS)
        ),
        ModelSet(
            "ip-adapter",
            "IP-Adapter FaceID Plus v2 weights",
            "TWIN_IP_ADAPTER",
            settings.TWIN_IP_ADAPTER,
            filename=settings.TWIN_IP_ADAPTER_WEIGHT,
        ),
        ModelSet(
            "image-encoder",
            "CLIP image encoder",
            "TWIN_IMAGE_ENCODER",
            settings.TWIN_IMAGE_ENCODER,
            patterns=tuple(_IMAGE_ENCODER_PATTERNS),
        ),
    ]


class Command(BaseCommand):
    # Worker-host setup: must work whatever state the web app's URLs or models are in.
    requires_system_checks: list[str] = []
    help = (
        "Download every weight the sdxl generation backend needs (SDXL base, IP-Adapter FaceID Plus v2, "
        "CLIP image encoder) into TWIN_MODELS_DIR. Jobs never download."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--only",
            action="append",
            choices=[item.key for item in model_sets()],
            help="fetch only this weight set (repeatable)",
        )

    def handle(self, *args: object, **options: object) -> None:
        models_dir = Path(settings.TWIN_MODELS_DIR)
        wanted = options.get("only") or [item.key for item in model_sets()]
        items = [item for item in model_sets() if item.key in wanted]
        self.stdout.write(f"Fetching {len(items)} weight set(s) into {models_dir}")
        failures: list[str] = []
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
                f"Could not fetch {len(failures)} of {len(items)} weight set(s):\n  "
                + "\n  ".join(failures)
                + f"\nThe sdxl backend cannot run until they are in {models_dir} "
                "(or in the Hugging Face cache). Check the network and run `manage.py fetch_models` again; "
                "finished files are not downloaded twice."
            )
        self.stdout.write(self.style.SUCCESS(f"All weights are in {models_dir}."))

    def _download(self, item: ModelSet, target: Path) -> None:
        from huggingface_hub import hf_hub_download, snapshot_download

        target.mkdir(parents=True, exist_ok=True)
        if item.filename:
            hf_hub_download(item.repo_id, item.filename, local_dir=target)
            return
        snapshot_download(item.repo_id, local_dir=target, allow_patterns=list(item.patterns))
        if item.key == "base":
            # A base model published without fp16 files: take its full-precision safetensors.
            missing = [c for c in _BASE_COMPONENTS_WITH_WEIGHTS if not any((target / c).glob("*.safetensors"))]
            if missing:
                snapshot_download(
                    item.repo_id, local_dir=target, allow_patterns=[f"{c}/*.safetensors*" for c in missing]
                )
                missing = [c for c in missing if not any((target / c).glob("*.safetensors"))]
            if missing:
                raise FileNotFoundError(f"the repository has no safetensors weights for {', '.join(missing)}")
        elif item.key == "image-encoder" and not (target / "model.safetensors").is_file():
            raise FileNotFoundError("the repository has no model.safetensors")


def _explain(exc: BaseException) -> str:
    """One line saying why a download failed, without a traceback."""
    from huggingface_hub import constants, errors

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
        return f"cannot reach the Hugging Face Hub at {constants.ENDPOINT} (no network?)"
    if type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
        return f"cannot reach the Hugging Face Hub at {constants.ENDPOINT} (no network?): {detail}"
    if isinstance(exc, PermissionError):
        return f"cannot write there: {detail}"
    return f"{type(exc).__name__}: {detail}"
