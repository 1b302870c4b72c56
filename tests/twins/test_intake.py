"""Intake: the cheap checks on uploaded files, in the web process, with real files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.db import DatabaseError
from PIL import Image

from tests.twins.images import image_bytes, jpeg_with_exif, png_bomb, upload
from twins import intake, services
from twins.intake import SelfieRefused
from twins.models import Selfie, Twin
from twinsite.errors import Conflict


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.parametrize(
    ("fmt", "name", "kwargs"),
    [
        ("JPEG", "selfie.jpg", {}),
        ("PNG", "selfie.jpg", {}),  # the name lies: content decides
        ("WEBP", "photo.png", {}),
        ("BMP", "photo.txt", {}),
        ("PNG", "alpha.png", {"mode": "RGBA", "color": (10, 200, 30, 128)}),
    ],
)
def test_supported_formats_are_accepted_by_content_and_stored_as_clean_jpeg(twin, fmt, name, kwargs):
    data = image_bytes(fmt, size=(400, 300), **kwargs)
    result = services.add_selfies(twin=twin, uploads=[upload(name, data)])

    selfie = result.accepted[0].selfie
    assert selfie.status == Selfie.Status.PENDING
    assert (selfie.width, selfie.height) == (400, 300)
    assert selfie.original_name == name
    assert selfie.image.name.startswith(f"twins/{twin.storage_key}/selfies/")
    stored_name = Path(selfie.image.name).name
    assert stored_name.endswith(".jpg") and name.split(".")[0] not in stored_name  # never the uploader's name
    with selfie.image.open("rb") as fh, Image.open(fh) as stored:
        assert stored.format == "JPEG" and stored.mode == "RGB"
    twin.refresh_from_db()
    assert twin.photo_count == 1


def _refusal(twin: Twin, name: str, data: bytes) -> SelfieRefused:
    with pytest.raises(services.SelfiesRefused) as caught:
        services.add_selfies(twin=twin, uploads=[upload(name, data)])
    refusal = caught.value.outcomes[0].refusal
    assert refusal.message
    assert caught.value.status_code == refusal.status_code
    return refusal


@pytest.mark.parametrize(
    ("name", "data", "code", "status"),
    [
        ("empty.jpg", b"", "empty", 400),
        ("notes.jpg", b"Dear diary, this is not a photo at all.\n" * 20, "unsupported_media", 415),
        ("truncated.jpg", image_bytes("JPEG", size=(800, 600), color=(1, 2, 3))[:1500], "corrupt", 400),
        ("bomb.png", png_bomb(), "too_many_pixels", 413),
        ("thumb.jpg", image_bytes("JPEG", size=(300, 120)), "too_small", 400),
        ("anim.gif", image_bytes("GIF", size=(400, 400), mode="P", color=3), "unsupported_media", 415),
    ],
)
def test_each_bad_file_is_refused_with_a_reason_and_status(twin, media_root, name, data, code, status):
    refusal = _refusal(twin, name, data)
    assert (refusal.code, refusal.status_code) == (code, status)
    assert not Selfie.objects.exists()
    assert _files_under(media_root) == []


def test_truncated_file_message_is_clear(twin):
    good = image_bytes("JPEG", size=(800, 600), color=(120, 40, 200))
    refusal = _refusal(twin, "half.jpg", good[: len(good) // 2])
    assert "damaged or incomplete" in refusal.message


def test_too_large_file_is_refused_before_decoding(twin, settings):
    settings.SELFIE_MAX_BYTES = 4096
    data = image_bytes("PNG", size=(600, 600), color=(0, 0, 0)) + b"\x00" * 5000
    refusal = _refusal(twin, "big.png", data)
    assert (refusal.code, refusal.status_code) == ("too_large", 413)
    assert "4 KB" in refusal.message


def test_over_pixel_limit_is_refused(twin, settings):
    settings.SELFIE_MAX_PIXELS = 100_000
    refusal = _refusal(twin, "wide.png", image_bytes("PNG", size=(400, 300)))
    assert (refusal.code, refusal.status_code) == ("too_many_pixels", 413)
    assert Image.MAX_IMAGE_PIXELS == 100_000  # Pillow's own bomb guard follows the setting


def test_more_than_the_photo_limit_is_refused_per_file(twin, settings):
    settings.TWIN_MAX_PHOTOS = 3
    files = [upload(f"{i}.png", image_bytes("PNG", color=(i, 0, 0))) for i in range(5)]
    result = services.add_selfies(twin=twin, uploads=files)
    assert [o.accepted for o in result.outcomes] == [True, True, True, False, False]
    assert {o.refusal.code for o in result.refused} == {"too_many_photos"}
    assert Selfie.objects.filter(twin=twin).count() == 3
    twin.refresh_from_db()
    assert twin.photo_count == 3


def test_exact_duplicates_are_refused_within_and_across_uploads(twin):
    data = image_bytes("JPEG", color=(9, 99, 199))
    result = services.add_selfies(twin=twin, uploads=[upload("a.jpg", data), upload("copy-of-a.jpg", data)])
    assert [o.accepted for o in result.outcomes] == [True, False]
    assert result.refused[0].refusal.code == "duplicate"

    refusal = _refusal(twin, "again.jpg", data)
    assert refusal.code == "duplicate"
    assert Selfie.objects.filter(twin=twin).count() == 1


def test_exif_orientation_is_applied_and_all_metadata_stripped(twin):
    # Orientation 6: the camera held sideways; viewers rotate the 400x300 pixels 90° clockwise.
    original = jpeg_with_exif(orientation=6)
    with Image.open(io.BytesIO(original)) as check:
        assert check.getexif()[0x0112] == 6 and check.getexif().get_ifd(0x8825)  # the fixture really has GPS

    selfie = services.add_selfies(twin=twin, uploads=[upload("sideways.jpg", original)]).accepted[0].selfie

    assert (selfie.width, selfie.height) == (300, 400)
    with selfie.image.open("rb") as fh:
        raw = fh.read()
    with Image.open(io.BytesIO(raw)) as stored:
        assert stored.size == (300, 400)
        assert len(stored.getexif()) == 0
        assert not {"exif", "comment", "xmp", "icc_profile"} & set(stored.info)
        rgb = stored.convert("RGB")
        top, bottom = rgb.getpixel((150, 20)), rgb.getpixel((150, 380))
    assert top[0] > 200 and top[2] < 60  # the red left half is now on top
    assert bottom[2] > 200 and bottom[0] < 60
    assert b"Exif" not in raw and b"SecretCam" not in raw and b"home address" not in raw
    assert selfie.sha256 == __import__("hashlib").sha256(original).hexdigest()  # of the original bytes


def test_upload_to_an_enrolling_twin_is_a_conflict(twin):
    Twin.objects.filter(pk=twin.pk).update(status=Twin.Status.ENROLLING)
    twin.refresh_from_db()
    with pytest.raises(Conflict) as caught:
        services.add_selfies(twin=twin, uploads=[upload("a.png", image_bytes("PNG"))])
    assert caught.value.status_code == 409


def test_a_database_failure_leaves_no_orphan_files(twin, media_root, monkeypatch):
    real_save = Selfie.save
    calls = {"n": 0}

    def flaky_save(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise DatabaseError("disk full")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Selfie, "save", flaky_save)
    files = [upload(f"{i}.png", image_bytes("PNG", color=(i, 50, 50))) for i in range(3)]
    with pytest.raises(DatabaseError):
        services.add_selfies(twin=twin, uploads=files)

    assert not Selfie.objects.exists()
    assert _files_under(media_root) == []


def test_heic_is_accepted_only_when_pillow_heif_is_installed():
    try:
        import pillow_heif  # noqa: F401
    except ImportError:
        assert "HEIF" not in intake.accepted_formats()
    else:
        assert "HEIF" in intake.accepted_formats()


def test_prepare_selfie_alone_needs_no_database(settings):
    settings.SELFIE_MIN_SIDE = 100
    prepared = intake.prepare_selfie(upload=upload("x.webp", image_bytes("WEBP", size=(120, 160))))
    assert (prepared.width, prepared.height, prepared.source_format) == (120, 160, "WEBP")
    assert prepared.content[:3] == b"\xff\xd8\xff"  # a JPEG
