"""Findings of the outside security probe (issue 16): each answer is a clear 4xx in the app's error
shape, never a 500 or Django's bare 400, and nothing is logged at error level."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import TwinFactory
from tests.helpers import ROOT
from tests.reliability.support import free_port, multipart
from twinsite.parsers import MAX_JSON_DEPTH, load_json

DEEP_BODY = "[" * 2000 + "]" * 2000  # ~4 KB: what the probe sent


def _error_logs(caplog) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


def _assert_error_shape(response, status: int, code: str | None = None) -> None:
    assert response.status_code == status, (response.status_code, response.content[:300])
    error = response.json()["error"]
    assert error["message"]
    if code:
        assert error["code"] == code, error


@pytest.fixture
def json_routes(alice) -> list[tuple[str, str]]:
    twin = TwinFactory(owner=alice, name="Deep")
    return [
        ("post", "/api/auth/token/"),
        ("post", "/api/generations/"),
        ("patch", f"/api/twins/{twin.pk}/"),
        ("post", "/generate"),
    ]


@pytest.mark.parametrize("who", ["anonymous", "token", "session"])
def test_deeply_nested_json_is_a_400_on_every_route(who, json_routes, alice, api_alice, caplog):
    if who == "token":
        http = api_alice
    else:
        http = APIClient(enforce_csrf_checks=True)
        if who == "session":
            http.force_login(alice)
    caplog.set_level(logging.WARNING)
    for method, path in json_routes:
        response = getattr(http, method)(path, data=DEEP_BODY, content_type="application/json")
        if who == "anonymous" and path != "/api/auth/token/":
            _assert_error_shape(response, 401)  # refused before the body is read
        elif who == "session":
            # The CSRF check reads the body first (no token sent): refused either way, never a 500.
            assert response.status_code in (400, 403), (path, response.status_code)
            assert response.json()["error"]["code"] in ("parse_error", "permission_denied")
        else:
            _assert_error_shape(response, 400, "parse_error")
            assert "deep" in response.json()["error"]["message"]
    assert _error_logs(caplog) == []


def test_deep_json_with_a_session_and_csrf_token_is_a_400(json_routes, alice, caplog):
    http = APIClient()  # the test client skips the CSRF check: the body is parsed by the view
    http.force_login(alice)
    caplog.set_level(logging.WARNING)
    for method, path in json_routes[1:]:
        response = getattr(http, method)(path, data=DEEP_BODY, content_type="application/json")
        _assert_error_shape(response, 400, "parse_error")
    assert _error_logs(caplog) == []


def test_json_just_under_the_depth_bound_still_parses():
    ok = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert load_json(ok) == load_json(ok)  # parses
    with pytest.raises(ValueError, match="deep"):
        load_json("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1))
    # Wide is fine; only depth counts.
    assert load_json('{"a": [' + ",".join(["[1]"] * 500) + "]}")["a"][0] == [1]
    assert load_json("null") is None


def test_nested_json_in_a_real_request_body_still_works(api_alice):
    # An ordinary login request, with an extra nested field a few levels deep: parsed, not refused.
    response = api_alice.post(
        "/api/auth/token/", data={"username": "alice", "password": "wrong", "extra": [[[{"a": 1}]]]}, format="json"
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"]["code"] != "parse_error"


# Finding 7: too many files, on every path the same refusal.

HUNDRED_FILES = [("files", f"{i}.jpg", b"\xff\xd8\xff" + bytes([i])) for i in range(100)]


def _session_client(user) -> tuple[Client, str]:
    """A browser-like client: the CSRF check runs, with the token a page gave it."""
    http = Client(enforce_csrf_checks=True)
    http.force_login(user)
    http.get("/")
    return http, http.cookies["csrftoken"].value


def test_too_many_files_from_the_dashboard_form_shows_a_message_on_the_twin_page(alice, caplog):
    twin = TwinFactory(owner=alice, name="Many")
    http, token = _session_client(alice)
    body, content_type = multipart(HUNDRED_FILES, fields={"csrfmiddlewaretoken": token})
    caplog.set_level(logging.WARNING)
    page = f"http://testserver/twins/{twin.pk}/"
    response = http.post(f"/twins/{twin.pk}/upload/", data=body, content_type=content_type, HTTP_REFERER=page)
    assert response.status_code == 302 and response["Location"] == page
    shown = http.get(page).content.decode()
    assert "Too many files in one request" in shown
    assert _error_logs(caplog) == []
    assert not twin.selfies.exists()


def test_too_many_files_from_a_form_without_a_page_to_go_back_to_is_a_styled_400(alice, caplog):
    twin = TwinFactory(owner=alice, name="Many")
    http, token = _session_client(alice)
    body, content_type = multipart(HUNDRED_FILES, fields={"csrfmiddlewaretoken": token})
    caplog.set_level(logging.WARNING)
    for referer in ({}, {"HTTP_REFERER": "https://evil.example/"}):
        response = http.post(f"/twins/{twin.pk}/upload/", data=body, content_type=content_type, **referer)
        assert response.status_code == 400
        page = response.content.decode()
        assert "Too many files in one request" in page and "css/app.css" in page
    assert _error_logs(caplog) == []


@pytest.mark.parametrize("who", ["session", "token"])
def test_too_many_files_is_the_json_too_many_files_error_on_every_api_path(who, alice, api_alice, caplog):
    twin = TwinFactory(owner=alice, name="Many")
    if who == "session":  # what static/js/twins.js sends: the session cookie and the CSRF header
        http, token = _session_client(alice)
        headers = {"HTTP_X_CSRFTOKEN": token}
    else:
        http, headers = api_alice, {}
    body, content_type = multipart(HUNDRED_FILES, fields={"name": "Many"})
    caplog.set_level(logging.WARNING)
    for method, path in [
        ("post", f"/api/twins/{twin.pk}/selfies/"),
        ("post", "/upload"),
        ("patch", f"/api/twins/{twin.pk}/"),
    ]:
        response = getattr(http, method)(path, data=body, content_type=content_type, **headers)
        _assert_error_shape(response, 400, "too_many_files")
    assert _error_logs(caplog) == []
    assert not twin.selfies.exists()


# Finding 9: the development server's static files.

TRAVERSALS = [
    "/static/..%2F..%2Fvar%2Fsecret_key",
    "/static/../twinsite/settings.py",
    "/static/%2e%2e/%2e%2e/var/secret_key",
    "/static/css/..%2F..%2F..%2Fmanage.py",
]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.mark.slow
def test_runserver_answers_404_to_a_path_out_of_static(tmp_path):
    """What `./twinsite start` runs in development: `manage.py runserver` with DEBUG on."""
    port = free_port()
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "TWINSITE_ENV": "development",
        "DEBUG": "1",
        "TWINSITE_DATA_DIR": str(data_dir),
        "LOG_FORMAT": "text",
    }
    env.pop("DATABASE_URL", None)
    log = tmp_path / "runserver.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"{base}/static/css/app.css")
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, log.read_text()
                time.sleep(0.25)
        else:
            raise AssertionError(f"runserver did not start:\n{log.read_text()}")
        assert status == 200 and b"{" in body  # static files are still served
        secret = (data_dir / "secret_key").read_text().strip().encode()
        for path in TRAVERSALS:
            status, body = _get(base + path)
            assert status == 404, (path, status, log.read_text()[-2000:])
            assert secret not in body
        assert "SuspiciousFileOperation" not in log.read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=15)


# Finding 8: a Content-Security-Policy on every page; no cache keeps the API token.

TEMPLATES_DIR = ROOT / "templates"


def test_every_page_carries_a_policy_without_inline_script(charlie):
    http = Client()
    pages = ["/login/", "/signup/", "/no-such-page/"]
    http.force_login(charlie)
    twin = TwinFactory(owner=charlie, name="Policy")
    pages += ["/", f"/twins/{twin.pk}/", "/generations/", "/settings/", "/admin/", "/admin/twins/twin/", "/api/docs/"]
    for path in pages:
        policy = http.get(path)["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'", (path, policy)
        assert directives["style-src"] == "'self'", (path, policy)
        assert directives["object-src"] == "'none'" and directives["frame-ancestors"] == "'none'"
        assert "unsafe" not in policy, (path, policy)


def test_templates_have_no_inline_script_style_or_event_handler():
    found = []
    inline = re.compile(r"""<script(?![^>]*\bsrc=)[^>]*>|<style\b|\sstyle=|\son[a-z]+=""", re.IGNORECASE)
    for template in TEMPLATES_DIR.rglob("*.html"):
        for number, line in enumerate(template.read_text().splitlines(), 1):
            if inline.search(line):
                found.append(f"{template.relative_to(ROOT)}:{number}: {line.strip()}")
    assert found == []


def test_the_api_docs_start_up_script_is_a_file_of_its_own(charlie):
    http = Client()
    http.force_login(charlie)
    page = http.get("/api/docs/").content.decode()
    scripts = re.findall(r"<script[^>]*>", page)
    assert scripts and all("src=" in tag for tag in scripts), scripts
    script = http.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


def test_the_settings_page_and_token_answers_are_never_cached(alice, api_alice):
    from tests.conftest import PASSWORD

    alice.set_password(PASSWORD)
    alice.save()
    http = Client()
    http.force_login(alice)
    answers = {
        "/settings/": http.get("/settings/"),
        "/account/token/": http.get("/account/token/"),
        "POST /api/auth/token/": APIClient().post(
            "/api/auth/token/", {"username": "alice", "password": PASSWORD}, format="json"
        ),
        "POST /api/auth/token/rotate/": api_alice.post("/api/auth/token/rotate/"),
    }
    for name, response in answers.items():
        assert response.status_code == 200, (name, response.status_code)
        assert "no-store" in response.get("Cache-Control", ""), (name, response.get("Cache-Control"))


def test_a_form_field_over_the_memory_limit_is_the_too_large_error_on_every_path(alice, api_alice, settings, caplog):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    twin = TwinFactory(owner=alice, name="Big")
    caplog.set_level(logging.WARNING)
    body, content_type = multipart(HUNDRED_FILES[:1], fields={"name": "x" * 5000})
    _assert_error_shape(
        api_alice.post(f"/api/twins/{twin.pk}/selfies/", data=body, content_type=content_type), 413, "too_large"
    )
    http, token = _session_client(alice)
    body, content_type = multipart(HUNDRED_FILES[:1], fields={"csrfmiddlewaretoken": token, "name": "x" * 5000})
    response = http.post(f"/twins/{twin.pk}/upload/", data=body, content_type=content_type)
    assert response.status_code == 413 and "The request is too large." in response.content.decode()
    assert _error_logs(caplog) == []
