"""PostgreSQL restarts while a generation runs: the web process (gunicorn) and the worker (qcluster)
ride it out without being restarted themselves.

Stopped and started with the command this machine documents (`pg_ctlcluster
--skip-systemctl-redirect <version> main stop|start`, as .ci/run does); always started again, in
a `finally`. During the outage every request gets a 503 with the JSON error shape, never a stack
trace. Afterwards the same web process answers again, the job that was cut off ends (succeeded,
or failed with a message), and a new job runs on the same worker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from accounts.services import get_or_create_api_token
from generation.models import GenerationJob
from generation.services import reap_stale_generations
from tests.factories import TwinFactory, UserFactory, unit_vector
from tests.reliability.support import WebServer, report, require_postgres
from tests.workers import Worker, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORKER_ENV = {
    "Q_GPU_TIMEOUT": "30",
    "Q_GPU_RETRY": "35",
    "GENERATION_STALE_AFTER_S": "3",
    "TWIN_WARM_UP": "true",
    "JOB_HEARTBEAT_S": "1",
    "Q_POLL": "0.2",
}
OUTAGE_S = 6


def _cluster_version() -> str:
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if (p / "main").is_dir())
    if not versions or not shutil.which("pg_ctlcluster"):
        pytest.skip("no local PostgreSQL cluster managed by pg_ctlcluster on this machine")
    return versions[-1]


def _pg(action: str, version: str) -> None:
    result = subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if result.returncode != 0 and not (action == "start" and _pg_ready()):  # "already running" is fine
        raise AssertionError(f"pg_ctlcluster {action} failed: {result.stdout}{result.stderr}")


def _pg_ready() -> bool:
    port = str(connection.settings_dict.get("PORT") or 5432)
    return subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", port, "-q"], check=False, timeout=10).returncode == 0


def _call(
    base_url: str,
    path: str,
    token: str,
    *,
    method: str = "GET",
    body: dict | None = None,
    accept: str = "application/json",
) -> tuple[int, str, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        base_url + path,
        data=data,
        method=method,
        headers={"Authorization": f"Token {token}", "Accept": accept, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


@pytest.fixture
def database_host_is_local():
    require_postgres("the database-restart test stops and starts PostgreSQL")
    if (connection.settings_dict.get("HOST") or "localhost") not in ("localhost", "127.0.0.1", "::1"):
        pytest.skip("the test database is not on this machine, so it can't be restarted here")
    return _cluster_version()


def test_web_and_worker_recover_from_a_database_restart(
    database_host_is_local, tmp_path, face_models, media_root, settings
):
    version = database_host_is_local
    settings.GENERATION_STALE_AFTER_S = 3  # the reaper, run here as its schedule would
    owner = UserFactory(username="restart")
    token = get_or_create_api_token(user=owner).key
    twin = TwinFactory(owner=owner, ready=True, embedding=unit_vector(512).tobytes(), embedding_dim=512)
    server = WebServer(
        log_path=tmp_path / "gunicorn.log", workers=2, threads=2, extra_env={"GENERATION_MAX_CONCURRENT_JOBS": "10"}
    )
    worker = Worker(cluster="gpu", extra_env=WORKER_ENV, log_path=tmp_path / "worker.log")
    outage: list[tuple[str, int, str, bytes]] = []
    try:
        status, _, body = _call(
            server.base_url,
            "/api/generations/",
            token,
            method="POST",
            body={"twin": twin.pk, "prompt": "portrait", "num_images": 2, "steps": 40},
        )
        assert status == 202, body
        job_id = json.loads(body)["id"]
        wait_for(
            lambda: GenerationJob.objects.filter(pk=job_id, progress_step__gt=0).exists(),
            timeout=120,
            interval=0.1,
            what="the generation to be running",
        )
        connection.close()  # this process's own connection is about to die with the server

        try:
            _pg("stop", version)
            assert not _pg_ready()
            for path, method, body in (
                ("/api/twins/", "GET", None),
                (f"/api/generations/{job_id}/", "GET", None),
                ("/api/generations/", "POST", {"twin": twin.pk, "prompt": "during the outage"}),
                ("/health", "GET", None),
                ("/system-status", "GET", None),
                (f"/status/{job_id}", "GET", None),
            ):
                outage.append((path, *_call(server.base_url, path, token, method=method, body=body)))
            page = _call(server.base_url, "/", token, accept="text/html")  # anonymous: the login page, no DB needed
            assert page[0] in (200, 503) and b"Traceback" not in page[2], page
            time.sleep(OUTAGE_S)  # long enough for the worker to hit it mid-job
        finally:
            _pg("start", version)
            wait_for(_pg_ready, timeout=60, interval=0.5, what="PostgreSQL to accept connections again")

        for path, status, content_type, body in outage:
            assert status == 503, (path, status, body[:300])
            assert content_type.startswith("application/json"), (path, content_type)
            payload = json.loads(body)
            assert payload.get("error", {}).get("code") == "unavailable" or payload.get("status") in (
                "error",
                "degraded",
            ), path
            assert b"Traceback" not in body and b"OperationalError" not in body

        # The same web process answers again (its connections are health-checked and replaced).
        wait_for(
            lambda: _call(server.base_url, "/api/twins/", token)[0] == 200,
            timeout=30,
            interval=0.5,
            what="the web process to answer again",
        )
        assert _call(server.base_url, "/health", token)[0] == 200

        # The job that was cut off ends, on the same worker process: re-delivered by the broker,
        # or queued again by the stale-job reaper.
        def cut_off_job_finished() -> bool:
            job = GenerationJob.objects.get(pk=job_id)
            if job.status == GenerationJob.Status.RUNNING:
                reap_stale_generations()
            return job.is_finished

        wait_for(cut_off_job_finished, timeout=180, interval=2, what="the interrupted generation to finish")
        job = GenerationJob.objects.get(pk=job_id)
        assert job.status in (GenerationJob.Status.SUCCEEDED, GenerationJob.Status.FAILED)
        if job.status == GenerationJob.Status.FAILED:
            assert job.error
        else:
            assert job.images.count() == 2

        # And new work runs, on the same worker process.
        status, _, body = _call(
            server.base_url,
            "/api/generations/",
            token,
            method="POST",
            body={"twin": twin.pk, "prompt": "after the restart", "num_images": 1, "steps": 4},
        )
        assert status == 202, body
        new_id = json.loads(body)["id"]
        wait_for(
            lambda: GenerationJob.objects.get(pk=new_id).is_finished,
            timeout=120,
            interval=0.5,
            what="a new generation after the restart",
        )
        assert GenerationJob.objects.get(pk=new_id).status == GenerationJob.Status.SUCCEEDED
        assert worker.process.poll() is None and server.process.poll() is None  # neither was restarted
        report(
            f"[database restart] {len(outage)} requests during a {OUTAGE_S} s outage: all 503 JSON; "
            f"interrupted job {job.status} after {job.attempts} starts; new job succeeded"
        )
    except Exception:
        print("worker log:\n" + worker.output() + "\ngunicorn log:\n" + server.output())
        raise
    finally:
        worker.kill()
        server.stop()
