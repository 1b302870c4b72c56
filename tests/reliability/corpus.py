"""The hostile and broken upload corpus, generated on the fly (nothing binary is checked in).

Each entry is a file a real client could send, with what the intake must answer: `accept`
(stored as a clean JPEG) or the refusal code and HTTP status. Built with Pillow and by hand
for the cases Pillow will not write (lying headers, truncation, polyglots).
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass

from PIL import Image, ImageDraw, PngImagePlugin

ACCEPT = "accept"
SIZE = (400, 320)


@dataclass(frozen=True)
class Sample:
    name: str  # the filename the client sends
    data: bytes
    expect: str  # ACCEPT, or the refusal code
    status: int = 201  # HTTP status of a single-file upload
    note: str = ""


def _photo(mode: str = "RGB", size: tuple[int, int] = SIZE) -> Image.Image:
    """Something photo-like: a gradient and shapes, so encoders have real content to chew on."""
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((size[0] // 4, size[1] // 6, 3 * size[0] // 4, 5 * size[1] // 6), fill=(220, 170, 140))
    draw.rectangle((10, 10, 60, 40), fill=(20, 90, 200))
    return image.convert(mode) if mode != "RGB" else image


def _encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int, height: int) -> bytes:
    """A few hundred bytes whose header claims width x height pixels."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def png_deflate_bomb() -> bytes:
    """A legal 8000x6000 greyscale PNG of zeros: 48 MP from ~50 KB of deflate."""
    width, height = 8000, 6000
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = zlib.compress(b"\x00" * ((width + 1) * height), 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", raw) + _png_chunk(b"IEND", b"")


def jpeg_with_size(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF header is rewritten to claim another size."""
    data = bytearray(_encode(_photo(size=(64, 64)), "JPEG"))
    for marker in (b"\xff\xc0", b"\xff\xc2"):
        at = data.find(marker)
        if at != -1:
            data[at + 5 : at + 9] = struct.pack(">HH", height, width)
            return bytes(data)
    raise AssertionError("no SOF marker")


def gif_bomb() -> bytes:
    data = bytearray(_encode(Image.new("P", (8, 8)), "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)  # logical screen size
    return bytes(data)


def bmp_bomb() -> bytes:
    data = bytearray(_encode(Image.new("RGB", (4, 4)), "BMP"))
    data[18:26] = struct.pack("<ii", 50_000, 50_000)
    return bytes(data)


def webp_bomb() -> bytes:
    """A VP8X header announcing a 16383 x 16383 canvas, with a tiny real frame inside."""
    data = bytearray(_encode(_photo(size=(16, 16)), "WEBP", lossless=True, exif=Image.Exif().tobytes()))
    at = data.find(b"VP8X")
    if at == -1:
        raise AssertionError("Pillow wrote no VP8X chunk")
    canvas = 16383 - 1
    data[at + 12 : at + 18] = canvas.to_bytes(3, "little") + canvas.to_bytes(3, "little")
    return bytes(data)


def jpeg_with_exif(orientation: int, *, gps: bool = True) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "SecretCam"
    exif[0x9286] = "UserComment: my home address"
    if gps:
        exif[0x8825] = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}
    return _encode(_photo(), "JPEG", exif=exif, comment=b"taken at home", quality=90)


def jpeg_with_raw_app1(payload: bytes) -> bytes:
    """A JPEG with an APP1 'Exif' segment holding `payload` as-is (broken TIFF structures)."""
    body = _encode(_photo(), "JPEG")
    segment = b"Exif\x00\x00" + payload
    app1 = b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment
    return body[:2] + app1 + body[2:]


def absurd_exif_values() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 65535  # no such orientation
    exif[0x0100] = 2**31 - 1  # ImageWidth that isn't
    exif[0x010F] = "M" * 60_000  # a 60 KB camera make
    exif[0x9003] = "9999:99:99 99:99:99"
    return _encode(_photo(), "JPEG", exif=exif)


def exif_ifd_loop() -> bytes:
    # TIFF header, IFD0 at 8 with one Orientation entry, and a "next IFD" pointing back at itself.
    tiff = b"MM\x00\x2a\x00\x00\x00\x08" + b"\x00\x01" + b"\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06\x00\x00"
    tiff += b"\x00\x00\x00\x08"
    return jpeg_with_raw_app1(tiff)


def exif_out_of_range_offsets() -> bytes:
    # Entries whose data offsets point far past the segment.
    entry = b"\x01\x0f\x00\x02\x7f\xff\xff\xff\x7f\xff\xff\xf0"
    tiff = b"II\x2a\x00\x08\x00\x00\x00" + b"\x02\x00" + entry + entry + b"\xff\xff\xff\x7f"
    return jpeg_with_raw_app1(tiff)


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    return data[: int(len(data) * keep)]


def png_bad_crc() -> bytes:
    data = bytearray(_encode(_photo(), "PNG"))
    at = data.find(b"IDAT")
    data[at + 8] ^= 0xFF  # corrupt the compressed stream; the CRC no longer matches
    return bytes(data)


def png_text_bomb() -> bytes:
    """A valid PNG with a zTXt chunk that inflates to 64 MB of text."""
    info = PngImagePlugin.PngInfo()
    image = _photo()
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    data = buffer.getvalue()
    payload = b"Comment\x00\x00" + zlib.compress(b"A" * (64 * 1024 * 1024), 9)
    at = data.find(b"IDAT") - 4
    return data[:at] + _png_chunk(b"zTXt", payload) + data[at:]


def png_with_html_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Description", "<html><script>alert(document.cookie)</script></html>")
    info.add_text("GPS", "48.8583 N, 2.2945 E")
    return _encode(_photo(), "PNG", pnginfo=info)


def jpeg_zip_polyglot() -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("payload.sh", "#!/bin/sh\necho owned\n")
    return _encode(_photo(), "JPEG") + archive.getvalue()


def jpeg_html_polyglot() -> bytes:
    # A real JPEG whose COM segment is an HTML document (served as text/html it would run).
    return _encode(_photo(), "JPEG", comment=b"<html><body><script>alert(1)</script></body></html>")


def gif_js_polyglot() -> bytes:
    # GIF89a header that also parses as JavaScript: GIF89a=1;alert(1)//
    return b"GIF89a/*\x01\x00\x01\x00\x00\xff\x00,*/=1;alert(document.domain)//" + b"\x00" * 32


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("selfie.jpg", _encode(_photo(), "JPEG"))
    return buffer.getvalue()


PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
SVG = (
    b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="400" height="400">'
    b'<script>alert(1)</script><circle cx="200" cy="200" r="150" fill="peru"/></svg>'
)
HTML = b"<!doctype html><html><body><script>fetch('/api/twins/')</script></body></html>"


def animated(fmt: str) -> bytes:
    frames = [_photo().rotate(angle) for angle in (0, 20, 40)]
    return _encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)


def build() -> list[Sample]:
    """Every sample, fresh. At least 40; sizes and limits assume the default settings."""
    jpeg = _encode(_photo(), "JPEG", quality=90)
    png = _encode(_photo(), "PNG")
    webp = _encode(_photo(), "WEBP")
    rgba = _photo().convert("RGBA")
    rgba.putalpha(128)
    palette_transparent = _photo().convert("P", palette=Image.Palette.ADAPTIVE)
    palette_transparent.info["transparency"] = 0
    samples = [
        # Decompression bombs: tiny files that claim enormous images.
        Sample("bomb-60k.png", png_bomb(60_000, 60_000), "too_many_pixels", 413),
        Sample("bomb-wide.png", png_bomb(2_000_000, 300), "too_many_pixels", 413),
        Sample("bomb-deflate.png", png_deflate_bomb(), "too_many_pixels", 413),
        Sample("bomb.jpg", jpeg_with_size(65_000, 65_000), "too_many_pixels", 413),
        Sample("bomb.gif", gif_bomb(), "unsupported_media", 415),
        Sample("bomb.bmp", bmp_bomb(), "too_many_pixels", 413),
        Sample("bomb.webp", webp_bomb(), "too_many_pixels", 413),
        Sample("text-bomb.png", png_text_bomb(), "corrupt", 400, "zTXt inflating to 64 MB"),
        # Broken files.
        Sample("truncated.jpg", truncated(jpeg), "corrupt", 400),
        Sample("truncated.png", truncated(png), "corrupt", 400),
        Sample("truncated.webp", truncated(webp), "corrupt", 400),
        Sample("header-only.jpg", jpeg[:20], "unsupported_media", 415),
        Sample("bad-crc.png", png_bad_crc(), "corrupt", 400),
        Sample("empty.jpg", b"", "empty", 400),
        Sample("fifty-mb.jpg", jpeg + b"\x00" * (50 * 1024 * 1024), "too_large", 413),
        Sample("jpeg-magic-then-noise.jpg", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 64, "unsupported_media", 415),
        # Other things named .jpg.
        Sample("notes.jpg", b"just some text, not a photo\n" * 20, "unsupported_media", 415),
        Sample("page.jpg", HTML, "unsupported_media", 415),
        Sample("drawing.jpg", SVG, "unsupported_media", 415),
        Sample("document.jpg", PDF, "unsupported_media", 415),
        Sample("archive.jpg", zip_bytes(), "unsupported_media", 415),
        Sample("script.jpg", b"#!/bin/sh\nrm -rf /\n", "unsupported_media", 415),
        Sample("scan.tiff", _encode(_photo(), "TIFF"), "unsupported_media", 415),
        Sample(
            "photo.heic", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64, "unsupported_media", 415
        ),
        # Polyglots: valid images carrying something else; stored re-encoded, the payload dropped.
        Sample("polyglot-zip.jpg", jpeg_zip_polyglot(), ACCEPT),
        Sample("polyglot-html.jpg", jpeg_html_polyglot(), ACCEPT),
        Sample("polyglot-text.png", png_with_html_text(), ACCEPT),
        Sample("gifar.jpg", gif_js_polyglot(), "unsupported_media", 415),
        # Animation: not a photo.
        Sample("animated.webp", animated("WEBP"), "animated", 415),
        Sample("animated.gif", animated("GIF"), "unsupported_media", 415),
        # Colour modes and depths.
        Sample("cmyk.jpg", _encode(_photo("CMYK"), "JPEG"), ACCEPT),
        Sample("grey.jpg", _encode(_photo("L"), "JPEG"), ACCEPT),
        Sample("grey16.png", _encode(_photo("L").convert("I;16"), "PNG"), ACCEPT),
        Sample("rgb48.png", _rgb48_png(), ACCEPT),
        Sample("palette.png", _encode(_photo().convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), ACCEPT),
        Sample("palette-transparent.png", _encode(palette_transparent, "PNG"), ACCEPT),
        Sample("rgba.png", _encode(rgba, "PNG"), ACCEPT),
        Sample("grey-alpha.png", _encode(_photo("LA"), "PNG"), ACCEPT),
        Sample("one-bit.png", _encode(_photo("1"), "PNG"), ACCEPT),
        Sample("lossless.webp", _encode(_photo(), "WEBP", lossless=True), ACCEPT),
        Sample("photo.bmp", _encode(_photo(), "BMP"), ACCEPT),
        Sample("progressive.jpg", _encode(_photo(), "JPEG", progressive=True), ACCEPT),
        # EXIF: every orientation, then nonsense.
        *[Sample(f"orientation-{n}.jpg", jpeg_with_exif(n), ACCEPT) for n in range(1, 9)],
        Sample("exif-absurd.jpg", absurd_exif_values(), ACCEPT),
        Sample("exif-loop.jpg", exif_ifd_loop(), ACCEPT),
        Sample("exif-offsets.jpg", exif_out_of_range_offsets(), ACCEPT),
        Sample("exif-garbage.jpg", jpeg_with_raw_app1(bytes(range(256)) * 8), ACCEPT),
        # Sizes at the edges.
        Sample("tiny.png", _encode(_photo(size=(1, 1)), "PNG"), "too_small", 400),
        Sample("thumbnail.jpg", _encode(_photo(size=(120, 90)), "JPEG"), "too_small", 400),
        Sample("sliver.png", _encode(_photo(size=(4000, 2)), "PNG"), "too_small", 400),
        # No face at all: accepted here, refused per photo at enrollment (no_face).
        Sample("no-face.jpg", _encode(Image.linear_gradient("L").resize(SIZE).convert("RGB"), "JPEG"), ACCEPT),
        # Hostile names (the content is a fine photo; each differs so none is a duplicate).
        Sample("../../../../etc/cron.d/evil.jpg", _variant(1), ACCEPT),
        Sample("..\\..\\windows\\evil.jpg", _variant(2), ACCEPT),
        Sample("selfie-😀-ünïcødé-日本語-سلفي.jpg", _variant(3), ACCEPT),
        Sample("a" * 300 + ".jpg", _variant(4), ACCEPT),
        Sample(".jpg", _variant(5), ACCEPT),
        Sample("semi;colon\"quote'<b>tag</b>.jpg", _variant(6), ACCEPT),
        Sample("nul\x00byte\x07bell.jpg", _variant(7), ACCEPT),
        Sample("animated.png", animated("PNG"), "animated", 415),
    ]
    names = [s.name for s in samples]
    assert len(names) == len(set(names)), "sample names must be unique"
    return samples


def _variant(n: int) -> bytes:
    image = _photo()
    ImageDraw.Draw(image).rectangle((100 + n * 10, 250, 120 + n * 10, 270), fill=(n * 40 % 256, 0, 0))
    return _encode(image, "JPEG")


def _rgb48_png() -> bytes:
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow writes no 48-bit RGB)."""
    width, height = SIZE
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")
        value = (y * 65535 // height).to_bytes(2, "big")
        row += (value + b"\x80\x00" + b"\x20\x00") * width
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + _png_chunk(b"IEND", b"")
    )
