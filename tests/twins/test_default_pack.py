"""After `fetch_models --from <a pack folder>`, enrollment uses that pack with no other setting."""

from __future__ import annotations

import os

from tests.conftest import INSIGHTFACE_ROOT, INSIGHTFACE_TEST_PACK
from tests.helpers import run_manage
from tests.twins.conftest import photos
from twins import face_pack, faces
from twins.models import Twin


def test_a_pack_installed_from_local_files_is_the_one_enrollment_uses(
    settings, tmp_path, twin, faces_dir, add_photos, enroll
):
    data = tmp_path / "data"
    env = {key: value for key, value in os.environ.items() if not key.startswith("INSIGHTFACE_")}
    env["TWINSITE_DATA_DIR"] = str(data)
    result = run_manage("fetch_models", "--from", str(INSIGHTFACE_ROOT / "models" / INSIGHTFACE_TEST_PACK), env=env)
    assert result.returncode == 0, result.stderr[-2000:]

    # What the worker sees with INSIGHTFACE_PACK unset and the default INSIGHTFACE_ROOT of that data dir.
    settings.INSIGHTFACE_ROOT = data / "models" / "insightface"
    settings.INSIGHTFACE_PACK = ""
    settings.SELFIE_MIN_SIDE = 200
    assert face_pack.configured_pack() == INSIGHTFACE_TEST_PACK
    add_photos(twin, photos(faces_dir / "george_w_bush"))
    assert enroll(twin).status == Twin.Status.READY, twin.status_message
    assert twin.embedding_model == INSIGHTFACE_TEST_PACK
    assert faces.model_info().root == str(settings.INSIGHTFACE_ROOT)


def test_an_explicit_pack_setting_wins_over_the_recorded_one(settings, tmp_path):
    settings.INSIGHTFACE_ROOT = tmp_path
    face_pack.record_pack(root=tmp_path, pack="recorded")
    settings.INSIGHTFACE_PACK = "explicit"
    assert face_pack.configured_pack() == "explicit"
    settings.INSIGHTFACE_PACK = ""
    assert face_pack.configured_pack() == "recorded"
    (tmp_path / face_pack.RECORDED_PACK_FILE).unlink()
    assert face_pack.configured_pack() == "buffalo_l"
