"""Readiness told honestly: /health/ready, /system-status and the staff banner follow the workers' heartbeats."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from generation import worker_status
from generation.models import WorkerHeartbeat
from tests.workers import Worker, stop_workers, wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_face_pack(settings, tmp_path):
    settings.INSIGHTFACE_ROOT = tmp_path / "no-models"
    settings.INSIGHTFACE_PACK = "buffalo_l"
    return settings.INSIGHTFACE_ROOT


def _both_clusters_beat() -> None:
    worker_status.beat(cluster="default")
    worker_status.beat(cluster="gpu")


def test_not_ready_while_no_worker_runs(client, api_alice):
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "not_ready",
        "checks": {"database": True, "default_worker": False, "gpu_worker": False, "enroll": False, "generate": False},
    }
    body = api_alice.get("/system-status").json()
    assert body["status"] == "degraded"
    assert body["workers"] == []
    assert any("no live worker of the gpu cluster" in problem for problem in body["problems"])
    assert client.get("/health").status_code == 200  # liveness is about this process, not the workers


def test_ready_when_a_worker_of_each_cluster_has_its_models(client, api_alice, face_models):
    _both_clusters_beat()
    ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.json()
    assert ready.json()["status"] == "ready"
    body = api_alice.get("/system-status").json()
    assert body["status"] == "ok" and body["problems"] == []
    gpu = next(w for w in body["workers"] if w["cluster"] == "gpu")
    assert gpu["can_enroll"] and gpu["can_generate"]
    assert gpu["face_models"]["pack"] == "scrfd500m_mbf"
    assert gpu["face_models"]["state"] in (worker_status.AVAILABLE, worker_status.LOADED)
    assert gpu["generation"]["backend"] == "tiny" and gpu["generation"]["preset"] == "default"


def test_missing_face_pack_is_not_ok_and_says_where_it_was_looked_for(client, api_alice, no_face_pack):
    _both_clusters_beat()
    ready = client.get("/health/ready")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {
        "database": True,
        "default_worker": True,
        "gpu_worker": True,
        "enroll": False,
        "generate": False,
    }
    assert str(no_face_pack) not in ready.content.decode()  # public: no paths
    body = api_alice.get("/system-status").json()
    assert body["status"] == "degraded"
    gpu = next(w for w in body["workers"] if w["cluster"] == "gpu")
    assert gpu["face_models"]["state"] == worker_status.MISSING
    assert str(no_face_pack) in gpu["face_models"]["error"]
    enroll_problem = next(p for p in body["problems"] if "can enroll" in p)
    assert "buffalo_l" in enroll_problem and "fetch_models" in enroll_problem


def test_a_silent_worker_counts_as_gone(client, face_models, settings):
    _both_clusters_beat()
    assert client.get("/health/ready").status_code == 200
    WorkerHeartbeat.objects.filter(cluster="gpu").update(
        seen_at=timezone.now() - timedelta(seconds=settings.WORKER_HEARTBEAT_S * 4)
    )
    assert client.get("/health/ready").json()["checks"]["gpu_worker"] is False


def test_staff_see_a_banner_while_models_are_missing(client, alice, charlie, no_face_pack):
    _both_clusters_beat()
    client.force_login(charlie)  # staff
    for page in ("/", "/admin/"):
        html = client.get(page).content.decode()
        assert 'id="readiness-banner"' in html, page
        assert "Models are missing on the workers" in html and str(no_face_pack) in html
    client.force_login(alice)  # not staff: the error reaches her as a plain message, not as a banner
    assert 'id="readiness-banner"' not in client.get("/").content.decode()


def test_no_banner_when_ready(client, charlie, face_models):
    _both_clusters_beat()
    client.force_login(charlie)
    assert 'id="readiness-banner"' not in client.get("/").content.decode()
    assert 'id="readiness-banner"' not in client.get("/admin/").content.decode()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_real_workers_report_what_they_loaded(client, tmp_path, face_models):
    """Real qcluster processes: the gpu one warms up, then its heartbeat names the loaded pack and pipeline."""
    env = {"WORKER_HEARTBEAT_S": "1", "TWIN_WARM_UP": "true"}
    workers = [Worker(cluster=c, extra_env=env, log_path=tmp_path / f"{c}.log") for c in ("default", "gpu")]
    try:
        wait_for(lambda: client.get("/health/ready").status_code == 200, timeout=180, what="a ready site")
        gpu = WorkerHeartbeat.objects.get(cluster="gpu")
        assert gpu.pid != 0 and gpu.can_enroll and gpu.can_generate
        assert gpu.capabilities["face_models"]["state"] == worker_status.LOADED
        assert gpu.capabilities["face_models"]["dim"] == 128  # read from the model: the test pack is 128-d
        assert gpu.capabilities["generation"]["state"] == worker_status.LOADED
        assert gpu.capabilities["generation"]["id_embedding_dim"] == 128  # warmed for the pack's size
    finally:
        stop_workers(workers)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_real_gpu_worker_without_a_face_pack_reports_the_error(client, tmp_path, face_models):
    env = {
        "WORKER_HEARTBEAT_S": "1",
        "TWIN_WARM_UP": "true",
        "INSIGHTFACE_ROOT": str(tmp_path / "empty"),
        "INSIGHTFACE_PACK": "buffalo_l",
    }
    worker = Worker(cluster="gpu", extra_env=env, log_path=tmp_path / "gpu.log")
    try:
        wait_for(lambda: WorkerHeartbeat.objects.filter(cluster="gpu").exists(), timeout=180, what="a heartbeat")
        gpu = WorkerHeartbeat.objects.get(cluster="gpu")
        assert not gpu.can_enroll and not gpu.can_generate
        assert gpu.capabilities["face_models"]["state"] == worker_status.MISSING
        assert "buffalo_l" in gpu.capabilities["face_models"]["error"]
        assert client.get("/health/ready").status_code == 503
    finally:
        stop_workers([worker])


def test_a_task_run_inline_reports_no_worker(monkeypatch, django_capture_on_commit_callbacks, alice):
    """Q_SYNC runs a task in the calling process: that process is no worker and starts no heartbeat."""
    import threading

    from django_q.conf import Conf
    from django_q.tasks import async_task

    monkeypatch.setattr(Conf, "SYNC", True)
    async_task("twins.tasks.purge_expired_selfies_task")
    assert not WorkerHeartbeat.objects.exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("heartbeat-")]
