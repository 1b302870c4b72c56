"""`/metrics`: who may read it, and that its numbers come from the database at scrape time."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from generation.models import GeneratedImage, GenerationJob
from tests.factories import GenerationJobFactory, TwinFactory
from tests.helpers import run_python
from tests.workers import database_url
from twins.models import Twin

pytestmark = pytest.mark.django_db

Status = GenerationJob.Status


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of an exposition."""
    parsed = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            parsed[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return parsed


def scrape(client: Client, **headers: str) -> dict:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    return samples(response.content)


# --- access -----------------------------------------------------------------------------------


def test_anonymous_scrape_is_refused_with_a_json_error(client):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_signed_in_non_staff_user_is_refused(client, alice):
    client.force_login(alice)
    assert client.get("/metrics").status_code == 403


def test_staff_session_may_scrape(client, charlie):
    client.force_login(charlie)
    assert ("twinsite_queue_depth", (("cluster", "gpu"),)) in scrape(client)


def test_bearer_token_from_settings(client, settings):
    settings.METRICS_TOKEN = "scrape-me-" + "x" * 30
    assert scrape(client, Authorization=f"Bearer {settings.METRICS_TOKEN}")
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # An API token of a user is not a metrics token.
    assert client.get("/metrics", headers={"Authorization": f"Token {settings.METRICS_TOKEN}"}).status_code == 401


def test_no_token_configured_means_no_bearer_access(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_public_setting_opens_it(client, settings):
    settings.METRICS_PUBLIC = True
    assert scrape(client)


# --- values -----------------------------------------------------------------------------------


def _finished_job(twin: Twin, *, status: str, waited_s: float, ran_s: float) -> GenerationJob:
    job = GenerationJobFactory(twin=twin, status=status)
    created = timezone.now() - timedelta(hours=1)
    started = created + timedelta(seconds=waited_s)
    GenerationJob.objects.filter(pk=job.pk).update(
        created_at=created, started_at=started, finished_at=started + timedelta(seconds=ran_s)
    )
    return job


def test_jobs_durations_and_identity_scores_are_read_from_the_database(client, settings, alice):
    from django_q.brokers import get_broker

    settings.METRICS_PUBLIC = True
    twin = TwinFactory(owner=alice, ready=True)
    TwinFactory(owner=alice)  # a draft
    fast = _finished_job(twin, status=Status.SUCCEEDED, waited_s=2, ran_s=3)  # run in (2.5, 5]
    _finished_job(twin, status=Status.SUCCEEDED, waited_s=40, ran_s=50)  # run in (45, 60]
    _finished_job(twin, status=Status.FAILED, waited_s=0.5, ran_s=0.5)
    GenerationJobFactory(twin=twin, status=Status.QUEUED)
    for index, score in enumerate([0.05, 0.45, 0.72, None]):
        GeneratedImage.objects.create(
            job=fast, index=index, file=f"generations/x/{fast.pk}/{index}.png", seed=index, identity_score=score
        )
    for _ in range(3):  # what a worker would find waiting; the broker counts them
        get_broker("gpu").enqueue("payload")

    values = scrape(client)

    def value(name: str, **labels: str) -> float:
        return values[(name, tuple(sorted(labels.items())))]

    assert value("twinsite_queue_depth", cluster="gpu") == 3
    assert value("twinsite_queue_depth", cluster="default") == 0
    assert value("twinsite_queue_broker_up", cluster="gpu") == 1
    assert value("twinsite_generation_jobs", status="succeeded") == 2
    assert value("twinsite_generation_jobs", status="failed") == 1
    assert value("twinsite_generation_jobs", status="queued") == 1
    assert value("twinsite_generation_jobs", status="running") == 0
    assert value("twinsite_twins", status="ready") == 1
    assert value("twinsite_twins", status="draft") == 1

    run = "twinsite_generation_run_seconds"
    assert value(f"{run}_bucket", status="succeeded", le="2.5") == 0
    assert value(f"{run}_bucket", status="succeeded", le="5.0") == 1
    assert value(f"{run}_bucket", status="succeeded", le="45.0") == 1
    assert value(f"{run}_bucket", status="succeeded", le="60.0") == 2
    assert value(f"{run}_bucket", status="succeeded", le="+Inf") == 2
    assert value(f"{run}_count", status="succeeded") == 2
    assert value(f"{run}_sum", status="succeeded") == pytest.approx(53, abs=0.01)
    assert value(f"{run}_count", status="failed") == 1
    assert value(f"{run}_count", status="cancelled") == 0

    wait = "twinsite_generation_queue_wait_seconds"
    assert value(f"{wait}_bucket", le="1.0") == 1
    assert value(f"{wait}_bucket", le="5.0") == 2
    assert value(f"{wait}_bucket", le="60.0") == 3
    assert value(f"{wait}_count") == 3  # the queued job never started: not counted
    assert value(f"{wait}_sum") == pytest.approx(42.5, abs=0.01)

    score = "twinsite_identity_score"
    assert value(f"{score}_bucket", le="0.0") == 0
    assert value(f"{score}_bucket", le="0.1") == 1
    assert value(f"{score}_bucket", le="0.5") == 2
    assert value(f"{score}_bucket", le="0.7") == 2
    assert value(f"{score}_bucket", le="0.8") == 3
    assert value(f"{score}_count") == 3
    assert value(f"{score}_sum") == pytest.approx(1.22, abs=1e-6)
    assert value("twinsite_generated_images_unscored_total") == 1


def test_requests_are_counted_by_view_and_status(client, settings):
    settings.METRICS_PUBLIC = True
    key = ("twinsite_http_requests_total", (("method", "GET"), ("status", "200"), ("view", "health")))
    before = scrape(client).get(key, 0)
    client.get("/health")
    client.get("/health")
    client.get("/no/such/page/at/all")
    after = scrape(client)
    assert after[key] == before + 2
    assert after[("twinsite_http_requests_total", (("method", "GET"), ("status", "404"), ("view", "unmatched")))] >= 1
    assert after[("twinsite_http_request_duration_seconds_count", (("view", "health"),))] >= 2


def test_rendering_metrics_loads_no_ml_library(settings):
    # A fresh interpreter on the test database: the scrape itself must not pull in torch and friends.
    code = """
import sys, django
django.setup()
from twinsite.metrics import render_metrics
body = render_metrics().decode()
assert "twinsite_generation_jobs" in body and "twinsite_identity_score_bucket" in body, body[:500]
ML = ("torch", "diffusers", "onnxruntime", "insightface", "transformers", "cv2")
print("HEAVY", sorted(m for m in ML if m in sys.modules))
"""
    result = run_python(code, env={"DATABASE_URL": database_url(), "TWINSITE_DATA_DIR": str(settings.DATA_DIR)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HEAVY []" in result.stdout, result.stdout
