"""The twins REST API: access rules, CRUD, uploads with per-file results, enrollment, private images."""

from __future__ import annotations

import json

import pytest
from django_q.conf import Conf
from django_q.models import OrmQ
from rest_framework.test import APIClient

from tests.factories import TwinFactory
from tests.twins.conftest import photos
from tests.twins.images import image_bytes, upload
from twins import services, tasks
from twins.models import Selfie, Twin


@pytest.fixture
def twin_with_photo(twin) -> tuple[Twin, Selfie]:
    selfie = services.add_selfies(twin=twin, uploads=[upload("me.png", image_bytes("PNG"))]).accepted[0].selfie
    return twin, selfie


def _routes(twin: Twin, selfie: Selfie) -> list[tuple[str, str]]:
    base = f"/api/twins/{twin.pk}/"
    return [
        ("get", base),
        ("patch", base),
        ("delete", base),
        ("post", base + "selfies/"),
        ("get", f"{base}selfies/{selfie.pk}/"),
        ("delete", f"{base}selfies/{selfie.pk}/"),
        ("post", base + "enroll/"),
        ("get", f"/twins/{twin.pk}/selfies/{selfie.pk}/image"),
        ("get", f"/twins/{twin.pk}/reference-face"),
    ]


def test_anonymous_gets_401_everywhere(twin_with_photo):
    twin, selfie = twin_with_photo
    client = APIClient()
    for method, url in [("get", "/api/twins/"), ("post", "/api/twins/"), *_routes(twin, selfie)]:
        response = getattr(client, method)(url)
        assert response.status_code == 401, (method, url)
        assert response.json()["error"]["code"] == "not_authenticated"


def test_a_stranger_gets_404_on_every_route_and_changes_nothing(api_bob, twin_with_photo, media_root):
    twin, selfie = twin_with_photo
    for method, url in _routes(twin, selfie):
        response = (
            getattr(api_bob, method)(url, {"name": "mine now"}, format="json")
            if method == "patch"
            else getattr(api_bob, method)(url)
        )
        assert response.status_code == 404, (method, url, response.content[:200])
        assert response.json()["error"]["code"] == "not_found"
    twin.refresh_from_db()
    assert twin.name == "Alice" and twin.status == Twin.Status.DRAFT
    assert Selfie.objects.filter(pk=selfie.pk).exists()
    assert api_bob.get("/api/twins/").json()["count"] == 0


def test_staff_may_read_everything_but_not_change_it_here(api_charlie, twin_with_photo):
    twin, selfie = twin_with_photo
    assert api_charlie.get(f"/api/twins/{twin.pk}/").status_code == 200
    assert api_charlie.get(f"/twins/{twin.pk}/selfies/{selfie.pk}/image").status_code == 200
    assert api_charlie.get("/api/twins/").json()["count"] == 0  # their own list by default
    assert [t["id"] for t in api_charlie.get("/api/twins/?all=1").json()["results"]] == [twin.pk]
    response = api_charlie.patch(f"/api/twins/{twin.pk}/", {"name": "x"}, format="json")
    assert response.status_code == 403
    assert api_charlie.delete(f"/api/twins/{twin.pk}/").status_code == 403


def test_create_list_rename(api_alice, alice):
    response = api_alice.post("/api/twins/", {"name": "  Me,   2026 "}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Me, 2026" and body["status"] == "draft" and body["selfies"] == []
    assert body["min_photos"] == 15 and body["progress"] == {"done": 0, "total": 0, "percent": 0}
    TwinFactory.create_batch(21, owner=alice)

    page = api_alice.get("/api/twins/").json()
    assert page["count"] == 22 and len(page["results"]) == 20 and page["next"]

    renamed = api_alice.patch(f"/api/twins/{body['id']}/", {"name": "Work me"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["name"] == "Work me"
    blank = api_alice.patch(f"/api/twins/{body['id']}/", {"name": "   "}, format="json")
    assert blank.status_code == 400 and blank.json()["error"]["fields"]["name"]


def test_multi_file_upload_answers_per_file(api_alice, twin):
    files = [
        upload("one.jpg", image_bytes("JPEG", color=(1, 2, 3))),
        upload("two.webp", image_bytes("WEBP", color=(4, 5, 6))),
        upload("notes.jpg", b"not an image at all"),
        upload("tiny.png", image_bytes("PNG", size=(64, 64))),
    ]
    response = api_alice.post(f"/api/twins/{twin.pk}/selfies/", {"files": files}, format="multipart")

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["accepted"], body["refused"], body["photo_count"]) == (2, 2, 2)
    results = body["results"]
    assert [r["name"] for r in results] == ["one.jpg", "two.webp", "notes.jpg", "tiny.png"]
    assert [r["status"] for r in results] == ["accepted", "accepted", "refused", "refused"]
    assert results[0]["selfie"]["status"] == "pending"
    assert results[0]["selfie"]["thumbnail_url"].endswith("/image?size=thumb")
    assert (results[2]["code"], results[3]["code"]) == ("unsupported_media", "too_small")
    assert all(r.get("message") for r in results[2:])


def test_a_single_file_field_still_works(api_alice, twin):
    response = api_alice.post(
        f"/api/twins/{twin.pk}/selfies/", {"file": upload("a.png", image_bytes("PNG"))}, format="multipart"
    )
    assert response.status_code == 201
    assert response.json()["accepted"] == 1


@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        ([("a.jpg", b"hello"), ("b.jpg", b"world")], 415, "unsupported_media"),
        ([("a.jpg", b"")], 400, "empty"),
        ([("a.jpg", b"hello"), ("b.jpg", b"")], 400, "selfies_refused"),
    ],
)
def test_when_every_file_is_refused_the_status_says_why(api_alice, twin, files, status, code):
    response = api_alice.post(
        f"/api/twins/{twin.pk}/selfies/", {"files": [upload(n, d) for n, d in files]}, format="multipart"
    )
    assert response.status_code == status
    body = response.json()
    assert body["error"]["code"] == code
    assert len(body["results"]) == len(files) == len(body["error"]["fields"]["files"])


def test_all_too_large_is_413(api_alice, twin, settings):
    settings.SELFIE_MAX_BYTES = 2048
    big = image_bytes("PNG", size=(500, 500)) + b"\0" * 4096
    response = api_alice.post(f"/api/twins/{twin.pk}/selfies/", {"files": [upload("big.png", big)]}, format="multipart")
    assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"


def test_no_files_is_400(api_alice, twin):
    response = api_alice.post(f"/api/twins/{twin.pk}/selfies/", {}, format="multipart")
    assert response.status_code == 400 and response.json()["error"]["code"] == "no_files"


def test_uploading_to_an_enrolling_twin_is_409(api_alice, twin_with_photo):
    twin, _ = twin_with_photo
    services.start_enrollment(twin=twin, enqueue=False)
    response = api_alice.post(
        f"/api/twins/{twin.pk}/selfies/", {"files": [upload("b.png", image_bytes("PNG"))]}, format="multipart"
    )
    assert response.status_code == 409 and response.json()["error"]["code"] == "enrolling"


def test_enroll_without_photos_is_409(api_alice, twin):
    response = api_alice.post(f"/api/twins/{twin.pk}/enroll/")
    assert response.status_code == 409 and response.json()["error"]["code"] == "no_photos"


def test_enroll_answers_202_queues_on_the_gpu_cluster_and_the_task_finishes_it(
    api_alice, twin, lfw, add_photos, django_capture_on_commit_callbacks
):
    add_photos(twin, photos(lfw / "george_w_bush"))
    with django_capture_on_commit_callbacks(execute=True):
        response = api_alice.post(f"/api/twins/{twin.pk}/enroll/")
    assert response.status_code == 202
    assert response.json()["status"] == "enrolling"
    assert response.json()["progress"] == {"done": 0, "total": 20, "percent": 0}
    assert api_alice.post(f"/api/twins/{twin.pk}/enroll/").status_code == 409  # already enrolling

    queued = OrmQ.objects.get(key="gpu")
    assert queued.task["func"] == "twins.tasks.enroll_twin_task"
    assert queued.task["args"] == (twin.pk,)

    assert tasks.enroll_twin_task(twin.pk) == Twin.Status.READY
    detail = api_alice.get(f"/api/twins/{twin.pk}/").json()
    assert detail["status"] == "ready" and detail["has_identity"] is True
    assert detail["progress"]["percent"] == 100 and detail["reference_face_url"]
    assert {s["status"] for s in detail["selfies"]} <= {"accepted", "rejected"}
    refused = [s for s in detail["selfies"] if s["status"] == "rejected"]
    assert all(s["reason"] and s["reason_label"] and s["message"] for s in refused)
    assert all(s["checks"]["similarity"] is not None for s in detail["selfies"] if s["status"] == "accepted")


def test_the_task_runs_through_django_q_by_its_dotted_path(
    api_alice, twin, lfw, add_photos, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 runs the task inline, resolving the dotted path itself
    add_photos(twin, photos(lfw / "george_w_bush"))
    with django_capture_on_commit_callbacks(execute=True):
        assert api_alice.post(f"/api/twins/{twin.pk}/enroll/").status_code == 202
    twin.refresh_from_db()
    assert twin.status == Twin.Status.READY


def test_the_task_of_an_erased_twin_does_nothing(db):
    assert tasks.enroll_twin_task(987654) == "deleted"


def test_embeddings_are_never_exposed(api_alice, twin, lfw, add_photos, enroll):
    add_photos(twin, photos(lfw / "george_w_bush"))
    enroll(twin)
    for url in ("/api/twins/", f"/api/twins/{twin.pk}/"):
        body = api_alice.get(url).json()
        text = json.dumps(body)
        assert '"embedding"' not in text
    detail = api_alice.get(f"/api/twins/{twin.pk}/").json()
    assert "embedding" not in detail and all("embedding" not in s for s in detail["selfies"])
    assert detail["embedding_dim"] == 128  # what it is, never its values


def test_selfie_images_are_served_to_the_owner_only(api_alice, api_bob, twin_with_photo):
    twin, selfie = twin_with_photo
    full = api_alice.get(f"/twins/{twin.pk}/selfies/{selfie.pk}/image")
    assert full.status_code == 200 and full["Content-Type"] == "image/jpeg"
    assert b"".join(full.streaming_content)[:3] == b"\xff\xd8\xff"
    assert "private" in full["Cache-Control"]
    thumb = api_alice.get(f"/twins/{twin.pk}/selfies/{selfie.pk}/image?size=thumb")
    assert thumb.status_code == 200 and thumb["Content-Type"] == "image/jpeg"
    assert api_bob.get(f"/twins/{twin.pk}/selfies/{selfie.pk}/image").status_code == 404
    assert api_alice.get(f"/twins/{twin.pk}/reference-face").status_code == 404  # none before enrollment


def test_deleting_a_photo(api_alice, twin_with_photo, media_root, django_capture_on_commit_callbacks):
    twin, selfie = twin_with_photo
    path = media_root / selfie.image.name
    assert path.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = api_alice.delete(f"/api/twins/{twin.pk}/selfies/{selfie.pk}/")
    assert response.status_code == 204
    assert not path.exists() and not Selfie.objects.exists()
    twin.refresh_from_db()
    assert twin.photo_count == 0


def test_openapi_schema_describes_the_twins_api(api_alice):
    response = api_alice.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    for path in (
        "/api/twins/",
        "/api/twins/{twin_id}/",
        "/api/twins/{twin_id}/selfies/",
        "/api/twins/{twin_id}/enroll/",
    ):
        assert path in schema["paths"]
    components = schema["components"]["schemas"]
    assert components["TwinStatusEnum"]["enum"] == ["draft", "enrolling", "ready", "failed"]
    detail_status = json.dumps(components["TwinDetail"]["properties"]["status"])
    assert "#/components/schemas/TwinStatusEnum" in detail_status
    assert not [
        name
        for name in components
        if "embedding" in json.dumps(components[name]).replace("embedding_model", "").replace("embedding_dim", "")
    ]


def test_too_many_parts_in_one_request_is_a_json_400(api_alice, twin, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 3
    files = [upload(f"{i}.png", image_bytes("PNG", color=(i, 1, 1))) for i in range(5)]
    response = api_alice.post(f"/api/twins/{twin.pk}/selfies/", {"files": files}, format="multipart")
    assert response.status_code == 400 and response.json()["error"]["code"] == "too_many_files"
