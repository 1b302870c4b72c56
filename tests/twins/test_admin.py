"""Support staff in the admin: lists with filters, read-only photos, re-run and erase through services."""

from __future__ import annotations

import pytest
from django_q.models import OrmQ

from tests.twins.images import image_bytes, upload
from twins import services
from twins.models import Selfie, Twin


@pytest.fixture
def staff_client(client, charlie):
    client.force_login(charlie)
    return client


@pytest.fixture
def twin_with_photos(twin):
    services.add_selfies(twin=twin, uploads=[upload(f"{i}.png", image_bytes("PNG", color=(i, 9, 9))) for i in range(2)])
    return twin


def test_twin_and_selfie_admin_pages(staff_client, twin_with_photos):
    twin = twin_with_photos
    listing = staff_client.get("/admin/twins/twin/?status__exact=draft")
    assert listing.status_code == 200 and twin.name in listing.content.decode()
    page = staff_client.get(f"/admin/twins/twin/{twin.pk}/change/").content.decode()
    selfie = Selfie.objects.filter(twin=twin).first()
    assert f"/twins/{twin.pk}/selfies/{selfie.pk}/image?size=thumb" in page  # read-only thumbnails inline
    assert "field-embedding_dim" in page and "field-embedding " not in page and 'field-embedding"' not in page
    selfies = staff_client.get("/admin/twins/selfie/?status__exact=pending")
    assert selfies.status_code == 200
    assert staff_client.get("/admin/twins/selfie/?reason__exact=blurry").status_code == 200
    assert staff_client.get(f"/admin/twins/selfie/{selfie.pk}/change/").status_code == 200
    # Staff can open the photo the thumbnail shows.
    assert staff_client.get(f"/twins/{twin.pk}/selfies/{selfie.pk}/image").status_code == 200


def test_the_plain_bulk_delete_is_replaced_by_erase(staff_client, twin_with_photos):
    page = staff_client.get("/admin/twins/twin/").content.decode()
    assert "delete_selected" not in page
    assert "erase_twins" in page and "rerun_enrollment" in page


def test_rerun_enrollment_action_queues_through_the_service(
    staff_client, twin_with_photos, twin, django_capture_on_commit_callbacks
):
    empty = Twin.objects.create(owner=twin.owner, name="No photos")
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/twins/twin/",
            {
                "action": "rerun_enrollment",
                "_selected_action": [twin.pk, empty.pk],
            },
            follow=True,
        )
    assert response.status_code == 200
    text = response.content.decode()
    assert "Enrollment queued for 1 twin(s)." in text
    assert "No photos: Upload photos before enrolling" in text
    twin.refresh_from_db()
    assert twin.status == Twin.Status.ENROLLING
    assert OrmQ.objects.filter(key="gpu").count() == 1


def test_erase_action_deletes_rows_and_files(
    staff_client, twin_with_photos, media_root, django_capture_on_commit_callbacks
):
    twin = twin_with_photos
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/twins/twin/", {"action": "erase_twins", "_selected_action": [twin.pk]}, follow=True
        )
    assert "Erased 1 twin(s)" in response.content.decode()
    assert not Twin.objects.filter(pk=twin.pk).exists()
    assert not [p for p in media_root.rglob("*") if str(twin.storage_key) in str(p)]


def test_deleting_a_twin_from_its_page_erases_files(
    staff_client, twin_with_photos, media_root, django_capture_on_commit_callbacks
):
    twin = twin_with_photos
    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(f"/admin/twins/twin/{twin.pk}/delete/", {"post": "yes"})
    assert not Twin.objects.filter(pk=twin.pk).exists()
    assert not [p for p in media_root.rglob("*") if p.is_file()]
