"""Small JPEG previews of stored photos (selfies, reference faces), made on request with Pillow."""

from __future__ import annotations

import io

from django.db.models.fields.files import FieldFile
from PIL import Image

THUMBNAIL_SIDE = 320
THUMBNAIL_QUALITY = 85


def thumbnail_jpeg(*, file: FieldFile, side: int = THUMBNAIL_SIDE) -> bytes:
    """A JPEG at most `side` pixels on its longer edge. Raises FileNotFoundError when the file is gone."""
    with file.open("rb") as fh:
        image = Image.open(fh)
        image.draft("RGB", (side * 2, side * 2))  # JPEG: decode at reduced scale, far less memory and time
        image = image.convert("RGB")
    image.thumbnail((side, side))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=THUMBNAIL_QUALITY)
    return out.getvalue()
