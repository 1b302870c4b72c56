"""Small JPEG previews of stored photos (selfies, reference faces), made on request with Pillow."""

from __future__ import annotations

import io

from django.db.models.fields.files import FieldFile
from PIL import Image

THUMBNAIL_SIDE = 320
THUMBNAIL_QUALITY = 85
# The reference face is shown at 56 and 96 CSS pixels: 192 covers 2x screens. The stored crop (256 px PNG,
# ~60 KB) stays as it is for generation; pages get this WebP of a few KB.
REFERENCE_FACE_SIDE = 192
REFERENCE_FACE_QUALITY = 80


def _resized(*, file: FieldFile, side: int, image_format: str, quality: int) -> bytes:
    with file.open("rb") as fh:
        image = Image.open(fh)
        image.draft("RGB", (side * 2, side * 2))  # JPEG: decode at reduced scale, far less memory and time
        image = image.convert("RGB")
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, format=image_format, quality=quality)
    return out.getvalue()


def thumbnail_jpeg(*, file: FieldFile, side: int = THUMBNAIL_SIDE) -> bytes:
    """A JPEG at most `side` pixels on its longer edge. Raises FileNotFoundError when the file is gone."""
    return _resized(file=file, side=side, image_format="JPEG", quality=THUMBNAIL_QUALITY)


def reference_face_webp(*, file: FieldFile, side: int = REFERENCE_FACE_SIDE) -> bytes:
    """The small WebP rendition of a reference face that pages show. Raises FileNotFoundError when it is gone."""
    return _resized(file=file, side=side, image_format="WEBP", quality=REFERENCE_FACE_QUALITY)
