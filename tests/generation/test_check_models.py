"""`manage.py check_models [--fetch-missing]`: present models exit 0; missing ones one fix-it paragraph, exit 1."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.generation.model_server import SMALL_PACK, ModelServer, pack_zip
from tests.helpers import run_python

PACK = "scrfd500m_mbf"


@pytest.fixture
def empty_root(settings, tmp_path) -> Path:
    settings.INSIGHTFACE_ROOT = tmp_path / "insightface"
    settings.INSIGHTFACE_PACK = ""
    settings.TWIN_MODELS_DIR = tmp_path / "models"
    settings.TWIN_BACKEND = "tiny"
    return settings.INSIGHTFACE_ROOT


def check(*args: str) -> str:
    out = io.StringIO()
    call_command("check_models", *args, stdout=out)
    return out.getvalue()


def lay_out_sdxl_weights(settings) -> None:
    """Where fetch_models puts the three weight sets, with the file each is recognised by."""
    models = Path(settings.TWIN_MODELS_DIR)
    for repo, marker in (
        (settings.TWIN_BASE_MODEL, "model_index.json"),
        (settings.TWIN_IP_ADAPTER, settings.TWIN_IP_ADAPTER_WEIGHT),
        (settings.TWIN_IMAGE_ENCODER, "config.json"),
    ):
        (models / repo).mkdir(parents=True, exist_ok=True)
        (models / repo / marker).write_bytes(b"{}")


def test_a_missing_face_pack_is_one_paragraph_with_the_path_and_the_fixes(empty_root):
    with pytest.raises(CommandError) as raised:
        check()
    message = str(raised.value)
    assert "\n" not in message.strip()  # one paragraph
    assert "the face pack 'buffalo_l' (a detection model and a recognition model: no such .onnx file in " in message
    assert str(empty_root / "models" / "buffalo_l") in message
    for fix in (
        "`./twinsite.sh manage fetch_models`",
        "`./twinsite.sh manage fetch_models --from <folder or archive>`",
        "MODEL_MIRROR_URL=",
        "INSIGHTFACE_ROOT=<folder holding models/<pack>/> INSIGHTFACE_PACK=<pack>",
    ):
        assert fix in message


def test_an_installed_pack_passes(empty_root):
    call_command("fetch_models", "--from", str(SMALL_PACK), stdout=io.StringIO())
    output = check()
    assert f"face pack '{PACK}' in {empty_root / 'models' / PACK}" in output
    assert "det_500m.onnx (detection), mobilefacenet.onnx (recognition)" in output
    assert "tiny backend: nothing to fetch" in output


def test_a_pack_without_a_recognizer_is_missing(empty_root, settings):
    folder = empty_root / "models" / PACK
    folder.mkdir(parents=True)
    (folder / "det_500m.onnx").write_bytes((SMALL_PACK / "det_500m.onnx").read_bytes())
    settings.INSIGHTFACE_PACK = PACK
    with pytest.raises(CommandError, match=r"\(a recognition model: no such .onnx file in "):
        check()


def test_sdxl_weights_are_checked_where_the_pipeline_looks(empty_root, settings):
    call_command("fetch_models", "--from", str(SMALL_PACK), stdout=io.StringIO())
    settings.TWIN_BACKEND = "sdxl"
    with pytest.raises(CommandError) as raised:
        check()
    message = str(raised.value)
    assert "face pack" not in message.split("Fix it")[0]
    encoder = Path(settings.TWIN_MODELS_DIR) / settings.TWIN_IMAGE_ENCODER / "config.json"
    assert f"the CLIP image encoder (TWIN_IMAGE_ENCODER={settings.TWIN_IMAGE_ENCODER}: looked for {encoder}" in message
    assert "SDXL base model" in message and "IP-Adapter FaceID Plus v2 weights" in message

    lay_out_sdxl_weights(settings)
    assert "sdxl weights present" in check()


def test_fetch_missing_downloads_the_pack_first(empty_root, settings):
    settings.INSIGHTFACE_PACK = PACK
    with ModelServer() as server:
        server.add_with_sidecar(f"/insightface/{PACK}.zip", pack_zip())
        settings.MODEL_MIRROR_URL = server.url
        output = check("--fetch-missing")
    assert f"Face pack '{PACK}' missing; fetching it" in output
    assert f"face pack '{PACK}' in {empty_root / 'models' / PACK}" in output


def test_fetch_missing_that_cannot_fetch_says_why_and_still_fails(empty_root, settings):
    settings.MODEL_MIRROR_URL = "http://127.0.0.1:9"
    with pytest.raises(CommandError) as raised:
        check("--fetch-missing")
    message = str(raised.value)
    assert "Fetching the face pack failed: http://127.0.0.1:9/insightface/buffalo_l.zip: cannot connect" in message
    assert "\n" not in message.strip()


def test_check_models_loads_no_ml_library(tmp_path):
    code = (
        "import sys, django; django.setup()\n"
        "from django.core.management import call_command\n"
        "try:\n    call_command('check_models')\nexcept Exception as exc:\n    print(type(exc).__name__)\n"
        "ml = ('torch', 'diffusers', 'onnxruntime', 'insightface', 'cv2', 'transformers')\n"
        "print('HEAVY:', ','.join(m for m in ml if m in sys.modules))\n"
    )
    result = run_python(code, env={"TWINSITE_DATA_DIR": str(tmp_path), "TWIN_BACKEND": "sdxl"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "CommandError" in result.stdout
    assert "HEAVY: \n" in result.stdout or result.stdout.rstrip().endswith("HEAVY:"), result.stdout
