"""Q_BROKER=redis://…: a generation submitted through the API waits in Redis and a real worker runs it.

The ORM-broker version of this test is tests/generation/test_queue_e2e.py.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from generation.models import GenerationJob
from tests.deploy.workers import stop_workers, token_client, twin_for_the_warm_pipeline, wait_until_warm
from tests.factories import UserFactory
from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _queue_depth(cluster: str) -> float:
    from twinsite.metrics import render_metrics

    for family in text_string_to_metric_families(render_metrics().decode()):
        for sample in family.samples:
            if sample.name == "twinsite_queue_depth" and sample.labels == {"cluster": cluster}:
                return sample.value
    raise AssertionError(f"no queue depth for {cluster}")


def test_a_generation_goes_through_redis_to_a_real_worker(redis_broker, face_models, media_root, tmp_path):
    import redis
    from django_q.models import OrmQ

    owner = UserFactory(username="erin")
    twin = twin_for_the_warm_pipeline(owner)
    client = token_client(owner)
    response = client.post(
        "/api/generations/",
        {"twin": twin.pk, "prompt": "studio portrait", "num_images": 2, "steps": 2, "seed": 42},
        format="json",
    )
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    # Queued in Redis (django-q2's list for the gpu cluster), not in the database.
    connection = redis.Redis.from_url(redis_broker)
    assert connection.llen("django_q:gpu:q") == 1
    assert OrmQ.objects.count() == 0
    assert _queue_depth("gpu") == 1

    worker = Worker(cluster="gpu", extra_env={"Q_BROKER": redis_broker}, log_path=tmp_path / "worker.log")
    try:
        wait_until_warm(worker)
        wait_for(
            lambda: GenerationJob.objects.get(pk=job_id).is_finished, timeout=120, what="the worker to finish the job"
        )
    except AssertionError as exc:
        pytest.fail(f"{exc}; worker log:\n{worker.output()}")
    finally:
        stop_workers([worker])

    job = GenerationJob.objects.get(pk=job_id)
    assert job.status == GenerationJob.Status.SUCCEEDED, (job.error, worker.output())
    assert job.attempts == 1
    assert [image.index for image in job.images.order_by("index")] == [0, 1]
    for image in job.images.all():
        assert (media_root / image.file.name).is_file()
    assert connection.llen("django_q:gpu:q") == 0  # taken from Redis
    assert OrmQ.objects.count() == 0
