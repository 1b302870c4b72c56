"""The old product's `/status/twin-<id>` shows each photo's verdict, as the token API does."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from twins import tasks
from twins.models import Twin


@pytest.fixture
def uploaded_twin(api_alice: APIClient, settings, face_models, faces_dir: Path) -> dict:
    """Three photos of one face and a coffee cup through the old `/upload`, enrolled as the worker would."""
    settings.SELFIE_MIN_SIDE = 200  # the LFW photos are 250x250
    settings.TWIN_MIN_PHOTOS = 3
    paths = [*sorted((faces_dir / "george_w_bush").glob("*.jpg"))[:3], faces_dir / "_hard" / "noface_coffee.png"]
    files = [path.open("rb") for path in paths]
    try:
        response = api_alice.post("/upload", {"files": files}, format="multipart")
    finally:
        for file in files:
            file.close()
    assert response.status_code == 202, response.content
    job = response.json()
    assert tasks.enroll_twin_task(job["twin"]["id"]) == Twin.Status.READY
    return job


def test_enrollment_status_lists_each_photos_verdict(api_alice: APIClient, uploaded_twin: dict) -> None:
    response = api_alice.get(f"/status/{uploaded_twin['job_id']}")
    assert response.status_code == 200
    body = response.json()
    assert body["type"] == "enrollment" and body["status"] == "ready"
    verdicts = {selfie["original_name"]: selfie for selfie in body["selfies"]}
    assert set(verdicts) == {"001.jpg", "002.jpg", "003.jpg", "noface_coffee.png"}
    for name in ("001.jpg", "002.jpg", "003.jpg"):
        assert verdicts[name]["status"] == "accepted" and verdicts[name]["reason"] == ""
    coffee = verdicts["noface_coffee.png"]
    assert coffee["status"] == "rejected" and coffee["reason"] == "no_face" and coffee["message"]
    # The same shape as the token API's twin detail, so a script can move between the two.
    detail = api_alice.get(f"/api/twins/{uploaded_twin['twin']['id']}/").json()
    assert body["selfies"] == detail["selfies"]


def test_a_strangers_enrollment_status_is_404(api_bob: APIClient, uploaded_twin: dict) -> None:
    assert api_bob.get(f"/status/{uploaded_twin['job_id']}").status_code == 404
