from __future__ import annotations

import json

import pytest

from tests.helpers import run_python


def test_health_ok_when_database_answers(client, db):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["X-Request-ID"]


def test_health_503_when_database_is_down(tmp_path):
    # A real unreachable database in a fresh process: nothing mocked.
    code = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/health');"
        "print(json.dumps({'status': r.status_code, 'body': r.json()}))"
    )
    result = run_python(
        code,
        env={
            "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
            "TWINSITE_DATA_DIR": str(tmp_path),
            "LOG_LEVEL": "error",
        },
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 503
    assert outcome["body"]["status"] == "error"


def test_api_during_database_outage_is_503_json(tmp_path):
    code = (
        "import django, json; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/api/twins/', HTTP_AUTHORIZATION='Token abc');"
        "print(json.dumps({'status': r.status_code, 'type': r['Content-Type'], 'body': r.json()}))"
    )
    result = run_python(
        code,
        env={
            "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
            "TWINSITE_DATA_DIR": str(tmp_path),
            "LOG_LEVEL": "error",
        },
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["status"] == 503
    assert outcome["body"]["error"]["code"] == "unavailable"


def test_system_status_needs_staff_or_token(client, alice):
    assert client.get("/system-status").status_code in (401, 403)
    client.force_login(alice)
    assert client.get("/system-status").status_code == 403


@pytest.mark.django_db
def test_system_status_reports_versions_queue_disk_and_gpu(api_alice, client, charlie):
    body = api_alice.get("/system-status").json()
    assert body["database"]["ok"] is True
    assert "django" in body["versions"] and "python" in body["versions"]
    assert set(body["queue"]["depth"]) == {"default", "gpu"}
    assert "free_gb" in body["disk"]
    assert "present" in body["gpu"]
    client.force_login(charlie)
    assert client.get("/system-status").status_code == 200
