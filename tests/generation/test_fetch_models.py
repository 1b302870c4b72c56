"""`manage.py fetch_models` without a network: a readable failure that names what is missing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

REPO_ROOT = Path(__file__).resolve().parents[2]
WEIGHT_SETS = (
    "SDXL base model (TWIN_BASE_MODEL=stabilityai/stable-diffusion-xl-base-1.0)",
    "IP-Adapter FaceID Plus v2 weights (TWIN_IP_ADAPTER=h94/IP-Adapter-FaceID)",
    "CLIP image encoder (TWIN_IMAGE_ENCODER=laion/CLIP-ViT-H-14-laion2B-s32B-b79K)",
    "Hyper-SD 8-step CFG LoRA (turbo preset) (TWIN_TURBO_LORA=ByteDance/Hyper-SD)",
)


def fetch_models(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("HF_", "HUGGINGFACE_", "TWIN_", "INSIGHTFACE_", "MODEL_MIRROR_"))
        and key != "TRANSFORMERS_OFFLINE"
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="twinsite.settings",
        TWINSITE_DATA_DIR=str(tmp_path / "data"),
        TWIN_MODELS_DIR=str(tmp_path / "models"),
        HF_HOME=str(tmp_path / "hf-home"),
        **env,
    )
    return subprocess.run(
        [sys.executable, "manage.py", "fetch_models", *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_offline_fails_readably_naming_every_weight_set(tmp_path):
    # The face pack comes from a mirror that refuses at once (port 9), so this never downloads for real.
    result = fetch_models(tmp_path, "--retries", "0", HF_HUB_OFFLINE="1", MODEL_MIRROR_URL="http://127.0.0.1:9")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "CommandError: Could not fetch 5 of 5 weight set(s)" in result.stderr
    assert (
        "InsightFace face pack (INSIGHTFACE_PACK=buffalo_l): http://127.0.0.1:9/insightface/buffalo_l.zip: "
        "cannot connect" in result.stderr
    )
    for weight_set in WEIGHT_SETS:
        assert f"{weight_set}: offline mode is on (HF_HUB_OFFLINE=1)" in result.stderr
    assert str(tmp_path / "models") in result.stderr
    assert not (tmp_path / "data" / "models" / "insightface" / "models" / "buffalo_l").exists()


def test_unreachable_hub_fails_readably(tmp_path):
    # Port 9 (discard) on loopback refuses at once: the same failure as a host with no network.
    result = fetch_models(tmp_path, "--only", "base", "--only", "image-encoder", HF_ENDPOINT="http://127.0.0.1:9")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "Could not fetch 2 of 2 weight set(s)" in result.stderr
    for weight_set in (WEIGHT_SETS[0], WEIGHT_SETS[2]):
        assert f"{weight_set}: cannot reach the Hugging Face Hub at http://127.0.0.1:9 (no network?)" in result.stderr


def test_a_local_folder_setting_needs_no_download(settings, tmp_path):
    settings.TWIN_MODELS_DIR = tmp_path / "models"
    settings.TWIN_BASE_MODEL = str(tmp_path)
    out = io.StringIO()
    call_command("fetch_models", "--only", "base", stdout=out)
    assert f"TWIN_BASE_MODEL is the local folder {tmp_path}; nothing to fetch" in out.getvalue()


def test_unknown_weight_set_is_a_usage_error():
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("fetch_models", "--only", "everything")
