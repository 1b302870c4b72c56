"""Cheap checks on an uploaded selfie, run in the web process (Pillow only, no ML).

The type is decided by content (what Pillow detects), never by the file name. The stored
copy is re-encoded from pixels: EXIF orientation applied, every byte of metadata (GPS,
camera, comments, XMP) left behind. The sha256 is of the original bytes, so the same file
uploaded twice is recognised.
"""

from __future__ import annotations

import hashlib
import io
import logging
import unicodedata
import warnings
from dataclasses import dataclass
from pathlib import PurePath
from typing import Protocol

from django.conf import settings
from PIL import Image, ImageOps, UnidentifiedImageError
from rest_framework import status

from twinsite.errors import TwinsiteError

logger = logging.getLogger(__name__)

BASE_FORMATS = ("JPEG", "PNG", "WEBP", "BMP")
STORED_FORMAT = "JPEG"
STORED_QUALITY = 92  # visually lossless for faces; a 12 MP selfie stays a few MB


class SelfieRefused(TwinsiteError):
    """One uploaded file did not pass the cheap checks. `code` says which, `message` says why."""

    def __init__(self, message: str, *, code: str, status_code: int = status.HTTP_400_BAD_REQUEST):
        super().__init__(message, code=code)
        self.status_code = status_code


class Upload(Protocol):
    """What Django's UploadedFile and File both offer."""

    name: str | None
    size: int | None

    def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class PreparedSelfie:
    original_name: str
    content: bytes  # the cleaned JPEG to store
    sha256: str  # of the original upload
    width: int
    height: int
    source_format: str


_heif_checked = False


def _heif_available() -> bool:
    """Register the HEIC/HEIF opener once, when pillow-heif is installed (it is optional)."""
    global _heif_checked
    if not _heif_checked:
        _heif_checked = True
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            return False
        register_heif_opener()
    return "HEIF" in Image.OPEN


def accepted_formats() -> tuple[str, ...]:
    return BASE_FORMATS + (("HEIF",) if _heif_available() else ())


def _human_formats() -> str:
    names = {"JPEG": "JPEG", "PNG": "PNG", "WEBP": "WebP", "BMP": "BMP", "HEIF": "HEIC"}
    return ", ".join(names[f] for f in accepted_formats())


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB" if size >= 1024 * 1024 else f"{size // 1024} KB"


def clean_name(name: str | None) -> str:
    # Only for display: the storage path never uses it (models use random names). Control and
    # format characters go: PostgreSQL refuses NUL in text, and the rest only spoof a display.
    printable = "".join(ch for ch in (name or "") if unicodedata.category(ch)[0] != "C")
    return PurePath(printable).name[:255] or "photo"


def _read(upload: Upload) -> bytes:
    limit = settings.SELFIE_MAX_BYTES
    size = upload.size
    if size is not None and size > limit:
        raise SelfieRefused(
            f"The file is {_mb(size)}; the limit is {_mb(limit)} per photo.",
            code="too_large",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    data = upload.read(limit + 1)  # never trust a declared size alone
    if not data:
        raise SelfieRefused("The file is empty (0 bytes).", code="empty")
    if len(data) > limit:
        raise SelfieRefused(
            f"The file is larger than the limit of {_mb(limit)} per photo.",
            code="too_large",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    return data


def _too_many_pixels(width: int, height: int) -> SelfieRefused:
    return SelfieRefused(
        f"The image is {width}x{height} pixels; the limit is {settings.SELFIE_MAX_PIXELS / 1e6:g} megapixels.",
        code="too_many_pixels",
        status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    )


def _decode(data: bytes) -> tuple[Image.Image, str]:
    # Pillow's own guard against decompression bombs, at our limit: it warns above it and
    # raises above twice it. Both become a refusal. Our explicit size check below comes first
    # for well-formed files; this catches formats where the header lies.
    Image.MAX_IMAGE_PIXELS = settings.SELFIE_MAX_PIXELS
    formats = accepted_formats()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(formats))
            source_format = image.format or "?"
            width, height = image.size
            if width * height > settings.SELFIE_MAX_PIXELS:
                raise _too_many_pixels(width, height)
            # An animation is not a photo, and only its first frame would be kept. (Not MPO: phone JPEGs
            # carry a depth or HDR gain map as a second "frame".)
            if source_format in ("WEBP", "PNG") and getattr(image, "is_animated", False):
                raise SelfieRefused(
                    "This is an animated image. Upload a still photo.",
                    code="animated",
                    status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                )
            image.load()  # the full decode: truncated or corrupt data fails here
    except SelfieRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SelfieRefused(
            f"The image has more pixels than the limit of {settings.SELFIE_MAX_PIXELS / 1e6:g} megapixels.",
            code="too_many_pixels",
            status_code=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        ) from None
    except UnidentifiedImageError:
        raise SelfieRefused(
            f"This is not a supported image. Upload {_human_formats()} photos.",
            code="unsupported_media",
            status_code=status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        # Pillow reports truncated/corrupt data as OSError (and a few formats as the others).
        logger.info("unreadable selfie", extra={"error": str(exc)[:200]})
        raise SelfieRefused(
            "The image is damaged or incomplete and could not be read. Export it again and retry.",
            code="corrupt",
        ) from None
    return image, source_format


def _upright_rgb(image: Image.Image) -> Image.Image:
    try:
        image = ImageOps.exif_transpose(image)
    except Exception as exc:  # a broken EXIF block must not cost the user the photo
        logger.info("ignoring unreadable EXIF orientation", extra={"error": str(exc)[:200]})
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def prepare_selfie(*, upload: Upload) -> PreparedSelfie:
    """Check one upload and return the cleaned copy to store, or raise SelfieRefused."""
    name = clean_name(upload.name)
    data = _read(upload)
    digest = hashlib.sha256(data).hexdigest()
    image, source_format = _decode(data)
    try:
        upright = _upright_rgb(image)
    finally:
        image.close()
    width, height = upright.size
    if min(width, height) < settings.SELFIE_MIN_SIDE:
        raise SelfieRefused(
            f"The photo is {width}x{height} pixels; its short side must be at least "
            f"{settings.SELFIE_MIN_SIDE} pixels. Use the original photo, not a thumbnail.",
            code="too_small",
        )
    # A fresh encode from pixels with an empty info dict: no EXIF, GPS, XMP, ICC or comment
    # can ride along (Pillow copies some of them from `info` when saving).
    upright.info = {}
    out = io.BytesIO()
    upright.save(out, format=STORED_FORMAT, quality=STORED_QUALITY, optimize=True)
    return PreparedSelfie(
        original_name=name,
        content=out.getvalue(),
        sha256=digest,
        width=width,
        height=height,
        source_format=source_format,
    )
