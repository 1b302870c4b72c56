"""Dashboard pages: list, create, twin page with verdicts, and the no-JavaScript forms."""

from __future__ import annotations

import pytest

from tests.factories import TwinFactory
from tests.twins.images import image_bytes, upload
from twins import services
from twins.models import Selfie, Twin


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def test_dashboard_lists_twins_with_badges_form_and_guide(alice_client, alice):
    TwinFactory(owner=alice, name="Ready one", ready=True)
    TwinFactory(owner=alice, name="Drafty")
    TwinFactory(name="Someone else's")
    page = alice_client.get("/").content.decode()
    assert "Ready one" in page and "Drafty" in page and "Someone else" not in page
    assert 'class="badge ready"' in page and 'class="badge draft"' in page
    assert "Create a twin" in page and "15 or more" in page and "No sunglasses" in page


def test_anonymous_is_sent_to_login(client, twin):
    assert client.get("/").status_code == 302
    assert client.get(f"/twins/{twin.pk}/")["Location"].startswith("/login/")


def test_create_twin_from_the_dashboard(alice_client, alice):
    response = alice_client.post("/twins/new/", {"name": "Me"})
    twin = Twin.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == f"/twins/{twin.pk}/"
    invalid = alice_client.post("/twins/new/", {"name": ""})
    assert invalid.status_code == 400 and "required" in invalid.content.decode()


def test_twin_page_shows_photos_verdicts_and_controls(alice_client, twin):
    services.add_selfies(
        twin=twin, uploads=[upload("a.png", image_bytes("PNG")), upload("b.png", image_bytes("PNG", color=(1, 1, 1)))]
    )
    Selfie.objects.filter(original_name="b.png").update(status="rejected", reason="blurry", message="Too soft.")
    page = alice_client.get(f"/twins/{twin.pk}/").content.decode()
    assert 'id="dropzone"' in page and 'type="file" name="files"' in page and "multiple" in page
    assert "js/twins.js" in page and 'id="enroll-button"' in page
    assert "Blurry" in page and "Too soft." in page and "Not checked yet" in page
    assert 'data-confirm="Erase' in page
    assert f'data-api-url="/api/twins/{twin.pk}/"' in page


def test_strangers_get_404_and_staff_read_only(client, bob, charlie, twin):
    client.force_login(bob)
    assert client.get(f"/twins/{twin.pk}/").status_code == 404
    assert client.post(f"/twins/{twin.pk}/delete/").status_code == 404
    client.force_login(charlie)
    page = client.get(f"/twins/{twin.pk}/").content.decode()
    assert "Read-only" in page and 'id="dropzone"' not in page
    assert client.post(f"/twins/{twin.pk}/delete/").status_code == 403
    assert Twin.objects.filter(pk=twin.pk).exists()


def test_no_javascript_upload_enroll_rename_and_delete(
    alice_client, twin, media_root, django_capture_on_commit_callbacks
):
    response = alice_client.post(
        f"/twins/{twin.pk}/upload/",
        {
            "files": [
                upload("a.png", image_bytes("PNG")),
                upload("bad.jpg", b"nope"),
            ]
        },
        follow=True,
    )
    text = response.content.decode()
    assert "1 photo added." in text and "bad.jpg: This is not a supported image" in text

    with django_capture_on_commit_callbacks(execute=False):
        response = alice_client.post(f"/twins/{twin.pk}/enroll/", follow=True)
    assert "Enrollment started" in response.content.decode()
    twin.refresh_from_db()
    assert twin.status == Twin.Status.ENROLLING
    again = alice_client.post(f"/twins/{twin.pk}/enroll/", follow=True).content.decode()
    assert "already being enrolled" in again

    Twin.objects.filter(pk=twin.pk).update(status=Twin.Status.FAILED)
    alice_client.post(f"/twins/{twin.pk}/rename/", {"name": "New name"})
    twin.refresh_from_db()
    assert twin.name == "New name"

    selfie = Selfie.objects.get(twin=twin)
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(f"/twins/{twin.pk}/selfies/{selfie.pk}/delete/")
    assert not Selfie.objects.filter(pk=selfie.pk).exists()

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/twins/{twin.pk}/delete/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert not Twin.objects.filter(pk=twin.pk).exists()
    assert not [p for p in media_root.rglob("*") if p.is_file()]


def test_a_ready_twin_page_offers_the_generate_form(client, alice):
    from tests.factories import TwinFactory

    twin = TwinFactory(owner=alice, ready=True)
    client.force_login(alice)
    page = client.get(f"/twins/{twin.pk}/").content.decode()
    assert f'action="/twins/{twin.pk}/generate/"' in page
    assert "Studio portrait" in page


def test_a_draft_twin_page_explains_generation_comes_after_enrollment(client, alice):
    from tests.factories import TwinFactory

    twin = TwinFactory(owner=alice)
    client.force_login(alice)
    page = client.get(f"/twins/{twin.pk}/").content.decode()
    assert "/generate/" not in page
    assert "Once enrollment succeeds" in page


def _real_face_png(faces_dir) -> bytes:
    """A reference face as enrollment stores it: a 256 px PNG of a real face (a flat colour would
    compress to nothing and prove nothing about weight)."""
    import io

    from PIL import Image

    with Image.open(sorted((faces_dir / "george_w_bush").glob("*.jpg"))[0]) as photo:
        face = photo.convert("RGB").crop((40, 40, 210, 210)).resize((256, 256))
    buffer = io.BytesIO()
    face.save(buffer, format="PNG")
    return buffer.getvalue()


def test_pages_show_a_small_webp_of_the_reference_face_and_keep_the_png(alice_client, alice, faces_dir):
    import io

    from django.core.files.base import ContentFile
    from PIL import Image

    twin = TwinFactory(owner=alice, ready=True, name="Faced")
    original = _real_face_png(faces_dir)
    twin.reference_face.save("face.png", ContentFile(original), save=True)
    Twin.objects.filter(pk=twin.pk).update(enrolled_at="2026-01-02T03:04:05Z")
    small = f"/twins/{twin.pk}/reference-face?size=small&amp;v=1767323045"
    for path in ["/", f"/twins/{twin.pk}/", f"/twins/{twin.pk}/generate/new/"]:
        assert f'src="{small}"' in alice_client.get(path).content.decode(), path

    response = alice_client.get(small.replace("&amp;", "&"))
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    assert "max-age=86400" in response["Cache-Control"] and "private" in response["Cache-Control"]
    with Image.open(io.BytesIO(response.content)) as rendition:
        assert rendition.format == "WEBP" and rendition.size == (192, 192)
    assert len(response.content) * 4 < len(original), (len(response.content), len(original))

    # The stored crop stays whole for generation (the CLIP encoder reads it), and the plain URL serves it.
    twin.refresh_from_db()
    assert twin.reference_face.read() == original
    plain = alice_client.get(f"/twins/{twin.pk}/reference-face")
    assert plain["Content-Type"] == "image/png" and b"".join(plain.streaming_content) == original


def test_selfie_thumbnails_say_which_photo_and_its_verdict(alice_client, twin):
    uploads = [upload(f"{n}.png", image_bytes("PNG", color=(n, 9, 9))) for n in (1, 2, 3)]
    services.add_selfies(twin=twin, uploads=uploads)
    Selfie.objects.filter(original_name="2.png").update(status="accepted")
    Selfie.objects.filter(original_name="3.png").update(status="rejected", reason="blurry")
    page = alice_client.get(f"/twins/{twin.pk}/").content.decode()
    assert 'alt="Selfie 1, not checked yet"' in page
    assert 'alt="Selfie 2, accepted"' in page
    assert 'alt="Selfie 3, refused"' in page
    assert 'alt="1.png"' not in page
