"""`fetch_models` provisions the face pack: download (resume, retry, checksum), mirror, and --from local files."""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.generation.model_server import SMALL_PACK, ModelServer, pack_zip
from twins import face_pack
from twinsite import downloads

PACK = "scrfd500m_mbf"
PACK_FILES = {"det_500m.onnx", "mobilefacenet.onnx"}


@pytest.fixture
def server():
    if not SMALL_PACK.is_dir():
        pytest.skip(f"InsightFace test models not found at {SMALL_PACK}")
    with ModelServer() as running:
        yield running


@pytest.fixture
def root(settings, tmp_path) -> Path:
    """An empty INSIGHTFACE_ROOT, with INSIGHTFACE_PACK unset."""
    settings.INSIGHTFACE_ROOT = tmp_path / "insightface"
    settings.INSIGHTFACE_PACK = ""
    settings.TWIN_MODELS_DIR = tmp_path / "models"
    return settings.INSIGHTFACE_ROOT


def leftovers(root: Path) -> list[str]:
    """Anything in root/models besides installed packs: partial downloads, staging folders."""
    models = root / "models"
    found = [p.name for p in models.iterdir() if p.name.startswith(".") and p.name != ".downloads"]
    return found + [p.name for p in (models / ".downloads").glob("*")] if models.is_dir() else []


def installed_files(root: Path, pack: str = PACK) -> set[str]:
    return {p.name for p in (root / "models" / pack).glob("*")}


def test_fetch_models_downloads_the_pack_from_the_mirror_and_makes_it_the_default(server, root, settings):
    settings.MODEL_MIRROR_URL = server.url
    settings.INSIGHTFACE_PACK = PACK  # not one of InsightFace's pinned packs: verified by its .sha256
    server.add_with_sidecar(f"/insightface/{PACK}.zip", pack_zip())
    out = io.StringIO()
    call_command("fetch_models", "--only", "face", stdout=out)

    assert installed_files(root) == PACK_FILES
    assert (root / "default-pack").read_text().strip() == PACK
    assert leftovers(root) == []
    assert f"{server.url}/insightface/{PACK}.zip -> {root / 'models' / PACK}" in out.getvalue()
    # Not a terminal: plain progress lines instead of a bar.
    assert f"  {PACK}.zip: " in out.getvalue() and "(100 %)" in out.getvalue()

    settings.INSIGHTFACE_PACK = ""
    assert face_pack.configured_pack() == PACK
    call_command("fetch_models", "--only", "face", stdout=(again := io.StringIO()))
    assert "already in" in again.getvalue()
    assert len(server.requested(f"/insightface/{PACK}.zip")) == 1


def test_a_cut_connection_resumes_with_a_range_request(server, root):
    body = pack_zip()
    served = server.add_with_sidecar(f"/insightface/{PACK}.zip", body, cut_after=len(body) // 3, cuts=1)
    face_pack.fetch_pack(pack=PACK, root=root, mirror_url=server.url, backoff_s=0)

    assert served.requests == [("GET", ""), ("GET", f"bytes={len(body) // 3}-")]
    assert installed_files(root) == PACK_FILES
    assert leftovers(root) == []


def test_a_broken_download_is_resumed_by_the_next_run(server, root):
    body = pack_zip()
    served = server.add_with_sidecar(f"/insightface/{PACK}.zip", body, cut_after=1000, cuts=1)
    with pytest.raises(downloads.DownloadError, match="connection closed at byte 1000 of"):
        face_pack.fetch_pack(pack=PACK, root=root, mirror_url=server.url, retries=0)
    assert (root / "models" / ".downloads" / f"{PACK}.zip.part").stat().st_size == 1000
    assert not (root / "models" / PACK).exists()

    face_pack.fetch_pack(pack=PACK, root=root, mirror_url=server.url, retries=0)
    assert served.requests[-1] == ("GET", "bytes=1000-")
    assert installed_files(root) == PACK_FILES


def test_server_errors_are_retried_with_backoff(server, root):
    served = server.add_with_sidecar(f"/insightface/{PACK}.zip", pack_zip(), fail_status=503, failures=2)
    face_pack.fetch_pack(pack=PACK, root=root, mirror_url=server.url, backoff_s=0.01)
    assert [method for method, _ in served.requests] == ["GET", "GET", "GET"]
    assert installed_files(root) == PACK_FILES


def test_a_missing_file_is_not_retried(server, root):
    server.add(f"/insightface/{PACK}.zip.sha256", b"0" * 64)
    with pytest.raises(downloads.DownloadError, match=f"{PACK}.zip: HTTP 404"):
        face_pack.fetch_pack(pack=PACK, root=root, mirror_url=server.url, backoff_s=10)


def test_a_wrong_checksum_is_refused_and_nothing_is_installed(server, root):
    server.add_with_sidecar(f"/insightface/{PACK}.zip", pack_zip(), sha256="ab" * 32)
    with pytest.raises(downloads.ChecksumMismatch, match=f"expected {'ab' * 32}"):
        face_pack.fetch_pack(pack=PACK, root=root, mirror_url=server.url)
    assert not (root / "models" / PACK).exists()
    assert leftovers(root) == []


def test_a_pinned_pack_is_checked_against_the_pin_not_the_mirrors_sidecar(server, root):
    # A mirror serving other bytes as buffalo_l.zip, with a matching sidecar, is still refused.
    server.add_with_sidecar("/insightface/buffalo_l.zip", pack_zip())
    with pytest.raises(downloads.ChecksumMismatch, match=face_pack.PINNED_SHA256["buffalo_l"]):
        face_pack.fetch_pack(pack="buffalo_l", root=root, mirror_url=server.url)
    assert not (root / "models" / "buffalo_l").exists()


def test_an_unverifiable_pack_is_refused(server, root):
    server.add(f"/insightface/{PACK}.zip", pack_zip())  # no .sha256 beside it
    with pytest.raises(face_pack.FacePackError, match="refusing to install an unverified pack"):
        face_pack.fetch_pack(pack=PACK, root=root, mirror_url=server.url)
    assert not (root / "models").exists() or not (root / "models" / PACK).exists()


def test_unreachable_mirror_fails_readably(root, settings):
    settings.MODEL_MIRROR_URL = "http://127.0.0.1:9"
    settings.INSIGHTFACE_PACK = "buffalo_l"  # pinned: no sidecar needed, so the zip download itself fails
    with pytest.raises(CommandError, match=r"Could not fetch 1 of 1 weight set\(s\)") as raised:
        call_command("fetch_models", "--only", "face", "--retries", "0", stdout=io.StringIO(), stderr=io.StringIO())
    assert "http://127.0.0.1:9/insightface/buffalo_l.zip: cannot connect" in str(raised.value)


# --- --from: air-gapped installs ------------------------------------------------------------------------------


def test_from_a_pack_folder_installs_it_under_its_own_name_and_makes_it_the_default(root):
    call_command("fetch_models", "--from", str(SMALL_PACK), stdout=(out := io.StringIO()))
    assert installed_files(root) == PACK_FILES
    assert face_pack.configured_pack() == PACK
    assert "(now the default pack)" in out.getvalue()
    assert "not in" in out.getvalue()  # the sdxl weights are simply not part of this source


def test_from_an_insightface_root_takes_the_configured_pack(root, settings):
    shared_root = SMALL_PACK.parent.parent
    with pytest.raises(CommandError, match="set INSIGHTFACE_PACK to the one to install"):
        call_command("fetch_models", "--from", str(shared_root), stdout=io.StringIO())  # two packs there
    settings.INSIGHTFACE_PACK = "scrfd2.5g_mbf_pixamatch"
    call_command("fetch_models", "--from", str(shared_root), stdout=io.StringIO())
    assert installed_files(root, "scrfd2.5g_mbf_pixamatch") == {"scrfd_2.5g_bnkps.onnx", "mobilefacenet.onnx"}


def test_from_a_zip_with_files_at_the_top(root, tmp_path):
    archive = tmp_path / "mypack.zip"
    archive.write_bytes(pack_zip())
    call_command("fetch_models", "--from", str(archive), stdout=io.StringIO())
    assert installed_files(root, "mypack") == PACK_FILES
    assert face_pack.configured_pack() == "mypack"


def test_from_a_tar_gz_holding_one_nested_folder(root, tmp_path):
    archive = tmp_path / "antelope_like.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        for path in SMALL_PACK.glob("*.onnx"):
            bundle.add(path, f"antelope_like/{path.name}")
    call_command("fetch_models", "--from", str(archive), stdout=io.StringIO())
    assert installed_files(root, "antelope_like") == PACK_FILES


def test_a_nested_zip_downloaded_like_antelopev2_installs_flat(server, root):
    server.add_with_sidecar("/insightface/nested.zip", pack_zip(nested="nested"))
    face_pack.fetch_pack(pack="nested", root=root, mirror_url=server.url)
    assert installed_files(root, "nested") == PACK_FILES


def test_an_archive_without_a_recognizer_is_refused_and_the_old_pack_stays(root, tmp_path):
    call_command("fetch_models", "--from", str(SMALL_PACK), stdout=io.StringIO())
    before = hashlib.sha256((root / "models" / PACK / "mobilefacenet.onnx").read_bytes()).hexdigest()
    archive = tmp_path / f"{PACK}.zip"
    archive.write_bytes(pack_zip(files=[SMALL_PACK / "det_500m.onnx"]))
    with pytest.raises(CommandError, match=r"has no recognition \.onnx model") as raised:
        call_command("fetch_models", "--from", str(archive), stdout=io.StringIO())
    assert "det_500m.onnx (detection)" in str(raised.value)
    assert hashlib.sha256((root / "models" / PACK / "mobilefacenet.onnx").read_bytes()).hexdigest() == before
    assert leftovers(root) == []


def test_a_truncated_model_is_not_a_pack(root, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "det_500m.onnx").write_bytes((SMALL_PACK / "det_500m.onnx").read_bytes())
    (broken / "mobilefacenet.onnx").write_bytes((SMALL_PACK / "mobilefacenet.onnx").read_bytes()[:100_000])
    with pytest.raises(CommandError, match=r"mobilefacenet.onnx \(unreadable\)"):
        call_command("fetch_models", "--from", str(broken), stdout=io.StringIO())
    assert not (root / "models" / "broken").exists()


def test_from_a_models_dir_copy_installs_the_weight_folders(root, settings, tmp_path):
    source = tmp_path / "usb"
    encoder = source / "test-org" / "tiny-encoder"
    encoder.mkdir(parents=True)
    (encoder / "config.json").write_text('{"hidden_size": 8}')
    (encoder / "model.safetensors").write_bytes(b"weights")
    settings.TWIN_IMAGE_ENCODER = "test-org/tiny-encoder"
    call_command("fetch_models", "--from", str(source), "--only", "image-encoder", stdout=io.StringIO())
    copied = Path(settings.TWIN_MODELS_DIR) / "test-org" / "tiny-encoder"
    assert (copied / "model.safetensors").read_bytes() == b"weights"

    with pytest.raises(CommandError, match=r"not in .*usb: SDXL base model \(no model_index.json"):
        call_command("fetch_models", "--from", str(source), "--only", "base", stdout=io.StringIO())


def test_from_something_that_is_not_there(root, tmp_path):
    with pytest.raises(CommandError, match="no such file or folder"):
        call_command("fetch_models", "--from", str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CommandError, match="nothing to install"):
        call_command("fetch_models", "--from", str(tmp_path / "empty"), stdout=io.StringIO())


# --- the Hugging Face weights through MODEL_MIRROR_URL ---------------------------------------------------------


def test_hugging_face_weights_come_through_the_mirror(server, root, settings):
    settings.MODEL_MIRROR_URL = server.url
    settings.TWIN_IMAGE_ENCODER = "test-org/tiny-encoder"
    settings.TWIN_IP_ADAPTER = "test-org/tiny-adapter"
    settings.TWIN_IP_ADAPTER_WEIGHT = "adapter.bin"
    encoder_files = {"config.json": b'{"hidden_size": 8}', "model.safetensors": b"w" * 5000, "README.md": b"x"}
    server.add_hf_repo("/huggingface", "test-org/tiny-encoder", encoder_files)
    server.add_hf_repo("/huggingface", "test-org/tiny-adapter", {"adapter.bin": b"a" * 3000, "other.bin": b"b"})

    call_command("fetch_models", "--only", "image-encoder", "--only", "ip-adapter", stdout=io.StringIO())
    models = Path(settings.TWIN_MODELS_DIR)
    encoder = models / "test-org" / "tiny-encoder"
    assert (encoder / "model.safetensors").read_bytes() == encoder_files["model.safetensors"]
    assert (encoder / "config.json").is_file() and not (encoder / "README.md").exists()  # only what loads
    assert (models / "test-org" / "tiny-adapter" / "adapter.bin").read_bytes() == b"a" * 3000
    assert not (models / "test-org" / "tiny-adapter" / "other.bin").exists()
    assert server.requested("/huggingface/test-org/tiny-adapter/resolve/main/adapter.bin")


def test_a_pinned_revision_is_fetched_and_the_run_record_reads_it_back(server, root, settings):
    from generation.pipeline.provenance import folder_record

    settings.MODEL_MIRROR_URL = server.url
    settings.TWIN_IP_ADAPTER = "test-org/tiny-adapter"
    settings.TWIN_IP_ADAPTER_WEIGHT = "adapter.bin"
    commit = server.add_hf_repo("/huggingface", "test-org/tiny-adapter", {"adapter.bin": b"a" * 3000})
    settings.TWIN_IP_ADAPTER_REVISION = commit

    call_command("fetch_models", "--only", "ip-adapter", stdout=io.StringIO())
    assert server.requested(f"/huggingface/test-org/tiny-adapter/resolve/{commit}/adapter.bin")
    folder = Path(settings.TWIN_MODELS_DIR) / "test-org" / "tiny-adapter"
    assert folder_record(folder, "adapter.bin")["revision"] == commit  # what the job records


def test_zip_members_cannot_escape_the_staging_folder(root, tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in SMALL_PACK.glob("*.onnx"):
            bundle.write(path, path.name)
        bundle.writestr("../../escaped.txt", "no")
    call_command("fetch_models", "--from", str(archive), stdout=io.StringIO())
    assert not (root / "escaped.txt").exists() and not (root.parent / "escaped.txt").exists()
    assert installed_files(root, "evil") == PACK_FILES | {"escaped.txt"}  # "../../" dropped: it stayed inside


def test_ensure_pack_downloads_only_when_missing(server, root, settings):
    settings.MODEL_MIRROR_URL = server.url
    settings.INSIGHTFACE_PACK = PACK
    served = server.add_with_sidecar(f"/insightface/{PACK}.zip", pack_zip())
    assert face_pack.ensure_pack() == root / "models" / PACK
    assert face_pack.ensure_pack() == root / "models" / PACK  # already there: no second download
    assert len(served.requests) == 1
    assert installed_files(root) == PACK_FILES
