"""The InsightFace face pack: which one the worker uses, where it lives, how it gets there.

No ML imports: `fetch_models` and `check_models` use this on hosts where onnxruntime may not
even be installed. A pack is the folder INSIGHTFACE_ROOT/models/<pack>/ holding at least a
face detector and a recognizer .onnx (what twins/faces.py loads). It is installed whole or not
at all: unpacked into a hidden folder beside it, checked, then renamed into place.

Which pack: INSIGHTFACE_PACK when set, else the one `fetch_models` installed last (recorded in
INSIGHTFACE_ROOT/default-pack), else buffalo_l. So a site that installs another pack from local
files needs no extra variable.
"""

from __future__ import annotations

import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path

from django.conf import settings

from twins.onnx_roles import DETECTION, RECOGNITION, onnx_role
from twinsite.downloads import ProgressCallback, download, read_checksum_sidecar

DEFAULT_PACK = "buffalo_l"
RELEASE_URL = "https://github.com/deepinsight/insightface/releases/download/v0.7"
RECORDED_PACK_FILE = "default-pack"
REQUIRED_ROLES = (DETECTION, RECOGNITION)
# sha256 of InsightFace's v0.7 release zips, as published with the release assets and quoted alike
# by several independent projects (not recomputed here: this code was written without internet).
# Any other pack is checked against `<pack>.zip.sha256` served beside the zip (a mirror's own packs).
PINNED_SHA256 = {
    "buffalo_l": "80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",  # 288,621,354 B
    "buffalo_m": "d98264bd8f2dc75cbc2ddce2a14e636e02bb857b3051c234b737bf3b614edca9",  # 275,951,529 B
    "buffalo_s": "d85a87f503f691807cd8bb97128bdf7a0660326cd9cd02657127fa978bab8b5e",  # 127,607,557 B
    "buffalo_sc": "57d31b56b6ffa911c8a73cfc1707c73cab76efe7f13b675a05223bf42de47c72",  # 14,969,382 B
    "antelopev2": "8e182f14fc6e80b3bfa375b33eb6cff7ee05d8ef7633e738d1c89021dcf0c5c5",  # 360,662,982 B
}
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
_PACK_NAME = re.compile(r"^[A-Za-z0-9][\w.+-]*$")
_STAGING_PREFIX = ".installing-"


class FacePackError(Exception):
    """The pack could not be fetched or installed; the message says why and names the paths."""


class NoPackInSource(FacePackError):
    """`install_from` found nothing that looks like a face pack in the source."""


def insightface_root() -> Path:
    return Path(settings.INSIGHTFACE_ROOT)


def configured_pack(*, root: Path | None = None) -> str:
    """The pack the worker loads: INSIGHTFACE_PACK, else the one fetch_models recorded, else buffalo_l."""
    return settings.INSIGHTFACE_PACK or recorded_pack(root=root or insightface_root()) or DEFAULT_PACK


def recorded_pack(*, root: Path) -> str | None:
    try:
        name = (root / RECORDED_PACK_FILE).read_text().strip()
    except OSError:
        return None
    return name if _PACK_NAME.match(name) else None


def record_pack(*, root: Path, pack: str) -> None:
    """Make `pack` the default for workers that don't set INSIGHTFACE_PACK (written atomically)."""
    root.mkdir(parents=True, exist_ok=True)
    temporary = root / f".{RECORDED_PACK_FILE}.tmp"
    temporary.write_text(pack + "\n")
    os.replace(temporary, root / RECORDED_PACK_FILE)


def pack_dir(*, root: Path | None = None, pack: str | None = None) -> Path:
    root = root or insightface_root()
    return root / "models" / (pack or configured_pack(root=root))


def pack_roles(folder: Path) -> dict[str, list[str]]:
    """role -> the .onnx file names in `folder` that InsightFace would route to it."""
    roles: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.onnx")) if folder.is_dir() else []:
        roles.setdefault(onnx_role(path) or "unreadable", []).append(path.name)
    return roles


def missing_roles(folder: Path) -> list[str]:
    roles = pack_roles(folder)
    return [role for role in REQUIRED_ROLES if role not in roles]


def is_installed(*, root: Path | None = None, pack: str | None = None) -> bool:
    return not missing_roles(pack_dir(root=root, pack=pack))


def pack_url(*, pack: str, mirror_url: str = "") -> str:
    """InsightFace's release, or `<MODEL_MIRROR_URL>/insightface/<pack>.zip` on an internal mirror."""
    base = f"{mirror_url.rstrip('/')}/insightface" if mirror_url else RELEASE_URL
    return f"{base}/{pack}.zip"


def fetch_pack(
    *,
    pack: str,
    root: Path,
    mirror_url: str = "",
    progress: ProgressCallback | None = None,
    retries: int = 4,
    backoff_s: float = 1.0,
) -> Path:
    """Download `pack`'s zip (resuming a broken one), verify it, install it; the pack's folder."""
    _check_name(pack)
    url = pack_url(pack=pack, mirror_url=mirror_url)
    expected = PINNED_SHA256.get(pack) or read_checksum_sidecar(url)
    if not expected:
        raise FacePackError(
            f"{url} has no known sha256 and no {url}.sha256 beside it; refusing to install an unverified pack "
            "(publish the checksum next to the zip, or install it with `fetch_models --from <file>`)"
        )
    # The partial download lives beside the packs, so the next run resumes it.
    archive = root / "models" / ".downloads" / f"{pack}.zip"
    download(url=url, dest=archive, sha256=expected, retries=retries, backoff_s=backoff_s, progress=progress)
    try:
        return install_archive(archive=archive, pack=pack, root=root)
    finally:
        archive.unlink(missing_ok=True)


def fetch_configured_pack(*, progress: ProgressCallback | None = None, retries: int = 4) -> Path:
    """Download and install the configured pack (from MODEL_MIRROR_URL when set), and make it the default."""
    root = insightface_root()
    pack = configured_pack(root=root)
    installed = fetch_pack(
        pack=pack, root=root, mirror_url=settings.MODEL_MIRROR_URL, progress=progress, retries=retries
    )
    record_pack(root=root, pack=pack)
    return installed


def ensure_pack(*, progress: ProgressCallback | None = None) -> Path:
    """The configured pack's folder, fetched first if it isn't complete."""
    folder = pack_dir()
    return folder if not missing_roles(folder) else fetch_configured_pack(progress=progress)


def install_from(*, source: Path, root: Path, pack: str | None = None) -> tuple[str, Path]:
    """Install a pack from local files: (pack name, installed folder).

    `source` is a pack folder (*.onnx), an InsightFace root (models/<pack>/), a TWIN_MODELS_DIR copy
    holding one (insightface/models/<pack>/), or a .zip/.tar(.gz) of a pack. The pack keeps its own
    name unless `pack` (an explicit INSIGHTFACE_PACK) says otherwise.
    """
    source = source.expanduser().resolve()
    if source.is_file():
        if not source.name.endswith(ARCHIVE_SUFFIXES):
            raise FacePackError(f"{source} is not a folder or a {'/'.join(ARCHIVE_SUFFIXES)} archive")
        name = pack or _strip_archive_suffix(source.name)
        return name, install_archive(archive=source, pack=name, root=root)
    if any(source.glob("*.onnx")):
        name = pack or source.name
        return name, install_folder(folder=source, pack=name, root=root)
    for models in (source / "models", source / "insightface" / "models"):
        if models.is_dir():
            found = _pick_pack(models, pack)
            name = pack or found.name
            return name, install_folder(folder=found, pack=name, root=root)
    raise NoPackInSource(f"no face pack in {source}: no .onnx files there, and no models/<pack>/ folder")


def install_archive(*, archive: Path, pack: str, root: Path) -> Path:
    """Unpack a pack archive into root/models/<pack>, whole or not at all.

    Both layouts InsightFace publishes work: files at the top (buffalo_l.zip) and one folder
    holding them (antelopev2.zip).
    """
    _check_name(pack)
    with _staging(root, pack) as staging:
        try:
            if archive.name.endswith(".zip"):
                with zipfile.ZipFile(archive) as bundle:
                    # zipfile drops absolute and ".." parts of member names, so nothing lands outside staging.
                    bundle.extractall(staging)  # noqa: S202
            else:
                with tarfile.open(archive) as bundle:
                    bundle.extractall(staging, filter="data")  # "data": no links, no paths outside staging
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as exc:
            raise FacePackError(f"cannot unpack {archive}: {exc}") from exc
        return _publish(_onnx_folder(staging, archive), pack=pack, root=root, source=archive)


def install_folder(*, folder: Path, pack: str, root: Path) -> Path:
    _check_name(pack)
    if folder.resolve() == pack_dir(root=root, pack=pack).resolve():
        if missing := missing_roles(folder):
            raise FacePackError(f"{folder} has no {' and no '.join(missing)} .onnx model")
        return folder  # already in place
    with _staging(root, pack) as staging:
        copy = staging / pack
        copy.mkdir()
        for path in sorted(folder.glob("*.onnx")):
            shutil.copyfile(path, copy / path.name)  # fresh permissions: read-only media stays replaceable
        return _publish(copy, pack=pack, root=root, source=folder)


class _staging:
    """A hidden folder inside root/models (same file system, so the final rename is atomic), always removed."""

    def __init__(self, root: Path, pack: str) -> None:
        self.models = root / "models"
        self.pack = pack

    def __enter__(self) -> Path:
        self.models.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f"{_STAGING_PREFIX}{self.pack}-", dir=self.models))
        return self.path

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def _publish(folder: Path, *, pack: str, root: Path, source: Path) -> Path:
    """Check `folder` is a usable pack, then rename it to root/models/<pack> (replacing an old one)."""
    if missing := missing_roles(folder):
        found = ", ".join(f"{name} ({role})" for role, names in pack_roles(folder).items() for name in names)
        raise FacePackError(
            f"{source} is not a usable face pack: it has no {' and no '.join(missing)} .onnx model "
            f"(found: {found or 'no .onnx files'}); nothing was installed"
        )
    target = root / "models" / pack
    aside = None
    if target.exists():
        # Move the old pack aside first: a rename can't replace a non-empty folder.
        aside = Path(tempfile.mkdtemp(prefix=".replaced-", dir=target.parent))
        os.replace(target, aside / pack)
    os.replace(folder, target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return target


def _onnx_folder(unpacked: Path, archive: Path) -> Path:
    if any(unpacked.glob("*.onnx")):
        return unpacked
    candidates = sorted({path.parent for path in unpacked.rglob("*.onnx")})
    if len(candidates) == 1:
        return candidates[0]
    where = ", ".join(str(path.relative_to(unpacked)) for path in candidates) or "none"
    raise FacePackError(f"{archive} holds no single folder of .onnx models (folders with .onnx files: {where})")


def _pick_pack(models: Path, pack: str | None) -> Path:
    packs = sorted(path for path in models.iterdir() if path.is_dir() and any(path.glob("*.onnx")))
    names = [path.name for path in packs]
    wanted = pack or (names[0] if len(names) == 1 else recorded_pack(root=models.parent))
    if wanted in names:
        return models / wanted
    if not pack and DEFAULT_PACK in names:
        return models / DEFAULT_PACK
    raise FacePackError(
        f"{models} holds the packs {', '.join(names) or '(none)'}; "
        + (f"{pack!r} is not one of them" if pack else "set INSIGHTFACE_PACK to the one to install")
    )


def _strip_archive_suffix(name: str) -> str:
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _check_name(pack: str) -> None:
    if not _PACK_NAME.match(pack):
        raise FacePackError(f"{pack!r} is not a face pack name (letters, digits, '.', '_', '-', '+')")
