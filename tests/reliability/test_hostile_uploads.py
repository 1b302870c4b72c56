"""Hostile and broken input: a generated corpus of uploads, and odd prompts. A clear 4xx or a
per-photo verdict for each, never a 500; the server keeps serving; nothing lands outside MEDIA_ROOT."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from generation.models import GenerationJob
from tests.factories import TwinFactory
from tests.reliability import corpus
from tests.reliability.support import assert_storage_matches_database, multipart, report, stored_files
from twins import services
from twins.models import Selfie, Twin

# Bytes that must never survive into a stored photo: payloads, metadata, markup.
LEAKS = (b"PK\x03\x04", b"<script", b"<html", b"SecretCam", b"home address", b"Exif", b"GPS", b"taken at home")


@pytest.fixture(scope="module")
def samples() -> list[corpus.Sample]:
    return corpus.build()


@pytest.fixture
def twin(alice) -> Twin:
    return TwinFactory(owner=alice, name="Hostile")


def _expected_status(sample: corpus.Sample, route: str) -> int:
    if route == "dashboard":
        return 302  # the page answers with a redirect and a message either way
    if sample.expect == corpus.ACCEPT:
        return 202 if route == "compat" else 201
    return sample.status


def _post(client, route: str, twin: Twin, sample: corpus.Sample):
    body, content_type = multipart([("files", sample.name, sample.data)], fields={"name": "From a script"})
    path = {"api": f"/api/twins/{twin.pk}/selfies/", "dashboard": f"/twins/{twin.pk}/upload/", "compat": "/upload"}[
        route
    ]
    return client.post(path, data=body, content_type=content_type)


@pytest.mark.parametrize("route", ["api", "dashboard", "compat"])
def test_every_hostile_file_gets_a_clear_answer_and_never_a_500(
    route, samples, alice, api_alice, client, twin, media_root, tmp_path
):
    assert len(samples) >= 40
    client.force_login(alice)
    http = client if route == "dashboard" else api_alice
    outside_before = {p for p in tmp_path.rglob("*") if p.is_file() and media_root not in p.parents}
    server_errors, wrong = [], []
    for sample in samples:
        response = _post(http, route, twin, sample)
        if response.status_code >= 500:
            server_errors.append((sample.name, response.status_code))
            continue
        if response.status_code != _expected_status(sample, route):
            wrong.append((sample.name, response.status_code, response.content[:300]))
            continue
        if route == "dashboard":
            continue
        body = response.json()
        if sample.expect == corpus.ACCEPT:
            item = (body["upload"] if route == "compat" else body)["results"][0]
            assert item["status"] == "accepted", (sample.name, body)
            assert item["name"] and not {"/", "\\", "\x00"} & set(item["name"]) and len(item["name"]) <= 255
        else:
            error = body["error"]
            assert error["code"] == sample.expect, (sample.name, error)
            assert error["message"] and body["results"][0]["message"], (sample.name, body)
    report(f"[hostile uploads via {route}] corpus: {len(samples)} files, server errors: {len(server_errors)}")
    assert server_errors == []
    assert wrong == []

    # Stored copies are clean JPEGs, inside MEDIA_ROOT, under random names; nothing else was written.
    assert_storage_matches_database(media_root)
    accepted = sum(1 for s in samples if s.expect == corpus.ACCEPT)
    assert Selfie.objects.filter(twin__owner=alice).count() == accepted
    for selfie in Selfie.objects.filter(twin__owner=alice):
        path = (media_root / selfie.image.name).resolve()
        assert media_root.resolve() in path.parents
        data = path.read_bytes()
        assert data[:3] == b"\xff\xd8\xff"
        assert not [leak for leak in LEAKS if leak in data], selfie.original_name
        assert "/" not in selfie.original_name and "\\" not in selfie.original_name
        assert len(selfie.original_name) <= 255
    outside_after = {p for p in tmp_path.rglob("*") if p.is_file() and media_root not in p.parents}
    assert outside_after == outside_before
    assert not (media_root / "../../../../etc/cron.d/evil.jpg").resolve().exists()

    # The server keeps serving.
    assert http.get("/health").status_code == 200
    good = corpus.Sample("after.jpg", corpus._encode(corpus._photo(size=(500, 500)), "JPEG"), corpus.ACCEPT)
    assert _post(http, route, twin, good).status_code == _expected_status(good, route)


def test_exif_orientation_is_applied_for_all_eight_values(api_alice, twin):
    # The photo is wider than tall with a marked top-left corner; each orientation must end upright.
    for orientation in range(1, 9):
        sample = corpus.jpeg_with_exif(orientation)
        body, content_type = multipart([("files", f"o{orientation}.jpg", sample)])
        response = api_alice.post(f"/api/twins/{twin.pk}/selfies/", data=body, content_type=content_type)
        assert response.status_code == 201, response.json()
        selfie = Selfie.objects.get(twin=twin, original_name=f"o{orientation}.jpg")
        with Image.open(io.BytesIO(sample)) as original:
            width, height = original.size
        expected = (height, width) if orientation >= 5 else (width, height)  # 5-8 swap the axes
        assert (selfie.width, selfie.height) == expected
        with selfie.image.open("rb") as fh, Image.open(fh) as stored:
            assert not stored.getexif()
            assert "exif" not in stored.info and "comment" not in stored.info


@pytest.mark.parametrize(
    ("filename", "expect"),
    [("..", "no_files"), ("", "no_files"), ("/", "no_files")],
)
def test_a_file_part_without_a_usable_name_is_a_clear_400(api_alice, twin, filename, expect):
    body, content_type = multipart([("files", filename, corpus._variant(9))])
    response = api_alice.post(f"/api/twins/{twin.pk}/selfies/", data=body, content_type=content_type)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == expect


def test_photos_without_a_face_get_a_per_photo_reason_at_enrollment(twin, samples, face_models, settings, media_root):
    from tests.twins.images import upload

    settings.TWIN_MIN_PHOTOS = 3
    accepted = [s for s in samples if s.expect == corpus.ACCEPT]
    result = services.add_selfies(twin=twin, uploads=[upload(s.name, s.data) for s in accepted])
    assert len(result.accepted) == len(accepted)
    services.start_enrollment(twin=twin, enqueue=False)
    services.enroll_twin(twin=twin)
    twin.refresh_from_db()
    assert twin.status == Twin.Status.FAILED
    assert "no face found" in twin.status_message.lower()
    selfies = list(twin.selfies.all())
    assert {s.status for s in selfies} == {Selfie.Status.REJECTED}
    assert all(s.reason and s.message for s in selfies)
    assert {s.reason for s in selfies} <= {
        "no_face",
        "face_too_small",
        "blurry",
        "too_dark",
        "too_bright",
        "extreme_pose",
        "duplicate",
        "multiple_faces",
        "different_person",
    }
    assert_storage_matches_database(media_root)


# (label, text, status as the prompt, status as the negative prompt)
PROMPTS = [
    ("empty", "", 400, 202),
    ("blank", "   \t\n  ", 400, 202),
    ("only-control", "\x00\x01\x02\x1b\x7f", 400, 400),
    ("100-kb", "portrait " * 11_400, 400, 400),
    ("just-over", "x" * 1001, 400, 400),
    ("control-mixed", "a portrait of me\x1b[31m in red\x07\r\nlight", 202, 202),
    ("unicode", "portrait de moi à Zürich, 東京の夜, مساء, 🌄🙂 — \u202ereversed\u202c", 202, 202),
    ("zero-width", "\u200b\u200c\u200d\ufeff", 400, 202),
    ("markup", "<script>alert(1)</script> studio portrait", 202, 202),
    ("sql", "portrait'); DROP TABLE generation_generationjob; --", 202, 202),
    ("lone-surrogate", "portrait \udcff", 400, 400),
]


@pytest.fixture
def ready_twin(alice, settings) -> Twin:
    settings.GENERATION_MAX_CONCURRENT_JOBS = 100
    return TwinFactory(owner=alice, ready=True)


def _json(payload: dict) -> bytes:
    # json.dumps escapes a lone surrogate as \udcff, which is exactly what a hostile client sends.
    import json

    return json.dumps(payload).encode()


@pytest.mark.parametrize(("label", "text", "as_prompt", "as_negative"), PROMPTS, ids=[p[0] for p in PROMPTS])
def test_odd_prompts_are_refused_or_cleaned_never_a_500(
    api_alice, alice, client, ready_twin, label, text, as_prompt, as_negative
):
    for payload, expected in (
        ({"prompt": text}, as_prompt),
        ({"prompt": "portrait", "negative_prompt": text}, as_negative),
    ):
        response = api_alice.post(
            "/api/generations/",
            data=_json({"twin": ready_twin.pk, "steps": 4, **payload}),
            content_type="application/json",
        )
        assert response.status_code == expected, (label, response.content[:300])
        body = response.json()
        if expected == 400:
            assert body["error"]["message"]
        else:
            job = GenerationJob.objects.get(pk=body["id"])
            for stored in (job.prompt, job.negative_prompt):
                assert all(ch >= " " and ch != "\x7f" for ch in stored), repr(stored)

    # The old product's route and the dashboard form answer the same way.
    compat = api_alice.post(
        "/generate", data=_json({"prompt": text, "twin": ready_twin.pk}), content_type="application/json"
    )
    assert compat.status_code == as_prompt, compat.content[:300]
    if label == "lone-surrogate":
        return  # a browser can't send one in a form: there is no UTF-8 for it
    client.force_login(alice)
    form = client.post(
        f"/twins/{ready_twin.pk}/generate/",
        {
            "prompt": text,
            "negative_prompt": "",
            "num_images": 1,
            "steps": 4,
            "guidance": 5,
            "identity_strength": 0.8,
            "best_of": 1,
        },
    )
    assert form.status_code == (302 if as_prompt == 202 else 400), label


@pytest.mark.parametrize(
    "name", ["", "\x00", "x\x00y", "\udcff", "n" * 10_000, "<script>alert(1)</script>", "\u202etxt.exe", "   "]
)
def test_odd_twin_names_are_refused_or_kept_as_text(api_alice, name):
    response = api_alice.post("/api/twins/", data=_json({"name": name}), content_type="application/json")
    assert response.status_code in (201, 400), response.content[:300]
    if response.status_code == 201:
        assert Twin.objects.get(pk=response.json()["id"]).name == " ".join(name.split())
    else:
        assert response.json()["error"]["message"]


def test_the_dashboard_shows_a_hostile_prompt_as_text(alice, client, ready_twin):
    client.force_login(alice)
    response = client.post(
        f"/twins/{ready_twin.pk}/generate/",
        {
            "prompt": "<script>alert('x')</script><img src=x onerror=alert(1)>",
            "negative_prompt": "",
            "num_images": 1,
            "steps": 4,
            "guidance": 5,
            "identity_strength": 0.8,
            "best_of": 1,
        },
    )
    assert response.status_code == 302
    page = client.get(response["Location"]).content
    assert b"<script>alert('x')</script>" not in page and b"<img src=x" not in page
    assert b"&lt;script&gt;" in page


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"prompt": {"a": 1}}', "application/json"),
        (b'{"twin": "x", "prompt": ["a"]}', "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
        (b"prompt=hi&twin=1", "text/plain"),
        (b'{"twin": 1e400, "prompt": "x"}', "application/json"),
    ],
)
def test_malformed_generation_requests_are_json_4xx(api_alice, ready_twin, body, content_type):
    response = api_alice.post("/api/generations/", data=body, content_type=content_type)
    assert 400 <= response.status_code < 500, response.content[:300]
    assert response.json()["error"]["message"]


def test_the_corpus_leaves_no_file_outside_media_root_even_for_the_web_form(alice, client, twin, samples, media_root):
    # The hostile names again, this time through Django's own parser for the dashboard: still random names.
    client.force_login(alice)
    for sample in [s for s in samples if "evil" in s.name or len(s.name) > 255]:
        body, content_type = multipart([("files", sample.name, sample.data)])
        assert client.post(f"/twins/{twin.pk}/upload/", data=body, content_type=content_type).status_code == 302
    names = stored_files(media_root)
    assert names and all(name.startswith(f"twins/{twin.storage_key}/selfies/") for name in names)
    assert not any("evil" in name or "aaaa" in name for name in names)
