"""An identity score reads the same on the page and in its live updates: one rule, GeneratedImage.score_band."""

from __future__ import annotations

import io

import pytest
from django.core.files.base import ContentFile
from PIL import Image

from generation.models import IDENTITY_SCORE_FAIR, IDENTITY_SCORE_GOOD, GeneratedImage, GenerationJob
from tests.factories import GenerationJobFactory, TwinFactory

pytestmark = pytest.mark.django_db

SCORES = [0.72, IDENTITY_SCORE_GOOD, 0.49, IDENTITY_SCORE_FAIR, 0.12, None]
BANDS = ["ok", "ok", "mid", "mid", "low", "none"]
PAGE_SCORES, PAGE_BANDS = [0.72, 0.49, 0.12, None], ["ok", "mid", "low", "none"]  # a job holds at most 4


def test_bands_follow_the_two_thresholds():
    assert [GeneratedImage(identity_score=score).score_band for score in SCORES] == BANDS


@pytest.fixture
def job(alice):
    job = GenerationJobFactory(
        twin=TwinFactory(owner=alice, ready=True), status=GenerationJob.Status.SUCCEEDED, num_images=len(PAGE_SCORES)
    )
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    for index, score in enumerate(PAGE_SCORES):
        image = GeneratedImage(job=job, index=index, seed=index, identity_score=score, width=8, height=8)
        image.file.save(image.filename, ContentFile(buffer.getvalue()), save=True)
    return job


def test_the_api_and_the_page_show_the_same_band(api_alice, client, alice, job):
    images = api_alice.get(f"/api/generations/{job.pk}/").json()["images"]
    assert [image["score_band"] for image in images] == PAGE_BANDS
    client.force_login(alice)
    html = client.get(f"/generations/{job.pk}/").content.decode()
    for number, band in enumerate(PAGE_BANDS[:-1], start=1):  # the no-face badge has its own wording
        assert f'class="badge {band}" title="Identity score' in html.split(f'data-number="{number}"')[1][:2000]


def test_no_threshold_is_written_twice():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for path in ("templates/generation/_score.html", "static/js/generation.js"):
        text = (root / path).read_text()
        assert "0.5" not in text and "0.3" not in text, f"{path} repeats a score threshold"
