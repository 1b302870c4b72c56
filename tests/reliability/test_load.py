"""Load: the web process as deployed (gunicorn, PostgreSQL) under 50 concurrent API clients for 60 s.

Loopback only. Each client is one user with a token and a ready twin, looping over a mix of
status polls, twin lists and generation submissions as fast as answers come back. No worker
runs, so submissions pile up in the queue as they would during a GPU backlog. Submissions may
meet the per-user quota (429): a handled answer, not an error; the quota is raised so most go
through. Reported (printed, and to $TEST_ARTIFACTS_DIR/load.json when set): requests/s, p50/p99
latency overall and per kind. Asserted: no 5xx, no connection error, every kind answered.
LOAD_TEST_SECONDS / LOAD_TEST_CLIENTS change the run for local experiments.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from accounts.services import get_or_create_api_token
from generation.models import GenerationJob
from tests.factories import GenerationJobFactory, TwinFactory, UserFactory
from tests.reliability.support import WebServer, report, require_postgres

pytestmark = [pytest.mark.load, pytest.mark.django_db(transaction=True)]

DURATION_S = float(os.environ.get("LOAD_TEST_SECONDS", "60"))
CLIENTS = int(os.environ.get("LOAD_TEST_CLIENTS", "50"))
MIX = (("poll", 0.5), ("list", 0.35), ("submit", 0.15))
HANDLED = {"poll": {200}, "list": {200}, "submit": {202, 429}}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class LoadClient(threading.Thread):
    """One API user: a keep-alive connection, the request mix, latency and status of every request."""

    def __init__(self, *, port: int, token: str, twin_id: int, job_ids: list[int], stop_at: float, seed: int):
        super().__init__(daemon=True)
        self.port, self.token, self.twin_id, self.job_ids = port, token, twin_id, job_ids
        self.stop_at = stop_at
        self.random = random.Random(seed)
        self.results: list[tuple[str, int, float]] = []  # kind, status (0 = connection error), seconds
        self.errors: list[str] = []
        self.connection: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {"Authorization": f"Token {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        if response.getheader("Connection", "").lower() == "close":
            self.connection.close()
            self.connection = None
        return response.status, data

    def run(self) -> None:
        kinds, weights = zip(*MIX, strict=True)
        while time.monotonic() < self.stop_at:
            kind = self.random.choices(kinds, weights)[0]
            if kind == "poll":
                method, path, body = "GET", f"/api/generations/{self.random.choice(self.job_ids)}/", None
            elif kind == "list":
                method, path, body = "GET", "/api/twins/", None
            else:
                payload = {"twin": self.twin_id, "prompt": "a studio portrait under load", "num_images": 1, "steps": 4}
                method, path, body = "POST", "/api/generations/", json.dumps(payload).encode()
            started = time.perf_counter()
            try:
                status, data = self._request(method, path, body)
            except (OSError, http.client.HTTPException) as exc:
                self.results.append((kind, 0, time.perf_counter() - started))
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
                continue
            self.results.append((kind, status, time.perf_counter() - started))
            if kind == "submit" and status == 202:
                self.job_ids.append(json.loads(data)["id"])  # poll the new job too
        if self.connection is not None:
            self.connection.close()


def test_fifty_clients_for_a_minute_get_no_errors(tmp_path, settings):
    require_postgres("the load test runs gunicorn's processes against one shared database")
    users = []
    for n in range(CLIENTS):
        user = UserFactory(username=f"load{n}", password=None)
        twin = TwinFactory(owner=user, ready=True, name=f"Load {n}")
        jobs = [
            GenerationJobFactory(twin=twin, owner=user, status=status).pk
            for status in (GenerationJob.Status.SUCCEEDED, GenerationJob.Status.QUEUED)
        ]
        users.append((get_or_create_api_token(user=user).key, twin.pk, jobs))

    server = WebServer(
        log_path=tmp_path / "gunicorn.log",
        workers=3,
        threads=8,
        extra_env={
            "API_THROTTLE_RATE": "1000000/min",
            "GENERATION_MAX_CONCURRENT_JOBS": "1000000",
            "GENERATION_MAX_IMAGES_PER_DAY": "100000000",
        },
    )
    try:
        stop_at = time.monotonic() + DURATION_S
        clients = [
            LoadClient(port=server.port, token=token, twin_id=twin_id, job_ids=jobs, stop_at=stop_at, seed=n)
            for n, (token, twin_id, jobs) in enumerate(users)
        ]
        started = time.monotonic()
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=DURATION_S + 120)
        elapsed = time.monotonic() - started
        assert not any(client.is_alive() for client in clients), "a client hung"
        assert server.process.poll() is None, server.output()
    finally:
        server.stop()

    results = [r for client in clients for r in client.results]
    errors = [e for client in clients for e in client.errors]
    statuses = Counter((kind, status) for kind, status, _ in results)
    latencies = [seconds for _, status, seconds in results if status]
    by_kind: dict[str, list[float]] = defaultdict(list)
    for kind, status, seconds in results:
        if status:
            by_kind[kind].append(seconds)
    figures = {
        "clients": CLIENTS,
        "seconds": round(elapsed, 1),
        "requests": len(results),
        "requests_per_s": round(len(results) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(1000 * _percentile(latencies, 0.99), 1) if latencies else None,
        "by_kind": {
            kind: {
                "requests": len(values),
                "p50_ms": round(1000 * statistics.median(values), 1),
                "p99_ms": round(1000 * _percentile(values, 0.99), 1),
            }
            for kind, values in by_kind.items()
        },
        "statuses": {f"{kind} {status}": count for (kind, status), count in sorted(statuses.items())},
        "server_errors": sum(count for (_, status), count in statuses.items() if status >= 500),
        "connection_errors": len(errors),
    }
    report("[load] " + json.dumps(figures))
    if os.environ.get("TEST_ARTIFACTS_DIR"):
        out = Path(os.environ["TEST_ARTIFACTS_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "load.json").write_text(json.dumps(figures, indent=1))

    assert errors == [], errors[:10]
    assert figures["server_errors"] == 0, (figures["statuses"], server.output())
    unexpected = {key: count for key, count in statuses.items() if key[1] not in HANDLED[key[0]]}
    assert unexpected == {}, unexpected
    for kind, _ in MIX:
        assert any(status in HANDLED[kind] - {429} for k, status in statuses if k == kind), f"no {kind} succeeded"
    # The submissions that were accepted are all in the queue, none lost.
    accepted = sum(count for (kind, status), count in statuses.items() if kind == "submit" and status == 202)
    assert GenerationJob.objects.filter(status=GenerationJob.Status.QUEUED).count() == accepted + CLIENTS
