"""CSRF on every session-authenticated POST, token revocation, password rules, per-user API throttling,
and the production security switches (login throttling: test_login_throttle.py)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient
from rest_framework.throttling import UserRateThrottle

from accounts.models import User
from accounts.services import delete_account, get_or_create_api_token
from tests.conftest import PASSWORD
from tests.factories import UserFactory
from tests.helpers import run_python
from tests.reliability.routes import BODY_ROUTES, OBJECT_ROUTES, OWN_ROUTES, call, snapshot
from tests.reliability.support import report

# --- CSRF ---------------------------------------------------------------------------------------


def _unsafe_calls(world):
    for route in OBJECT_ROUTES + OWN_ROUTES:
        url = reverse(route.name, kwargs=route.kwargs(world))
        for method, data in route.calls:
            if method != "get":
                yield route.name, route.kind, method, url, data
    for name, payload in BODY_ROUTES:
        yield name, "api", "post", reverse(name), {k: (world.twin.pk if v == "TWIN" else v) for k, v in payload.items()}
    # Pages that only take a POST or take one beside their form.
    for name in ("logout", "password_change", "account-delete", "account-delete-data", "twin-create"):
        new = "x y z w 1 2 3 4"
        yield (
            name,
            "page",
            "post",
            reverse(name),
            {
                "old_password": PASSWORD,
                "password": PASSWORD,
                "new_password1": new,
                "new_password2": new,
                "name": "csrf",
            },
        )


def test_every_session_post_needs_the_csrf_token(world, alice):
    before = snapshot(world)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(alice)
    checked = []
    for name, kind, method, url, data in _unsafe_calls(world):
        response = call(client, method, url, data, kind)
        assert response.status_code == 403, (name, method, response.status_code)
        if kind == "api":
            assert "CSRF" in response.json()["error"]["message"], name
        checked.append(name)
    report(f"[csrf] session-authenticated unsafe requests refused without a token: {len(checked)}")
    assert len(checked) >= 25
    assert snapshot(world) == before
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)
    assert client.get(reverse("dashboard")).status_code == 200  # still logged in: logout needed the token too


def test_with_the_token_the_same_post_goes_through(world, alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get(reverse("dashboard"))  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    url = reverse("twin-rename", kwargs={"twin_id": world.twin.pk})
    assert client.post(url, {"name": "Renamed"}, HTTP_X_CSRFTOKEN=token).status_code == 302
    world.twin.refresh_from_db()
    assert world.twin.name == "Renamed"


def test_login_and_signup_forms_need_the_csrf_token(db):
    client = Client(enforce_csrf_checks=True)
    assert client.post(reverse("login"), {"username": "x", "password": "y"}).status_code == 403
    assert (
        client.post(reverse("signup"), {"username": "x", "password1": PASSWORD, "password2": PASSWORD}).status_code
        == 403
    )
    assert not User.objects.filter(username="x").exists()


def test_token_clients_need_no_csrf_token(world, alice):
    client = APIClient(enforce_csrf_checks=True)
    client.credentials(HTTP_AUTHORIZATION=f"Token {world.token}")
    response = client.patch(
        reverse("api-twin-detail", kwargs={"twin_id": world.twin.pk}), {"name": "By token"}, format="json"
    )
    assert response.status_code == 200


# --- API tokens ---------------------------------------------------------------------------------


def _status_with(token: str) -> int:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client.get("/api/twins/").status_code


def test_rotating_revokes_the_old_token_at_once(alice, client):
    first = get_or_create_api_token(user=alice).key
    assert _status_with(first) == 200
    by_api = APIClient()
    by_api.credentials(HTTP_AUTHORIZATION=f"Token {first}")
    second = by_api.post("/api/auth/token/rotate/").json()["token"]
    assert _status_with(first) == 401 and _status_with(second) == 200

    client.force_login(alice)
    assert client.post(reverse("api-token-rotate")).status_code == 302
    third = get_or_create_api_token(user=alice).key
    assert third != second
    assert _status_with(second) == 401 and _status_with(third) == 200


def test_a_deactivated_or_deleted_user_token_stops_working(alice, bob, django_capture_on_commit_callbacks):
    alice_token, bob_token = get_or_create_api_token(user=alice).key, get_or_create_api_token(user=bob).key
    User.objects.filter(pk=alice.pk).update(is_active=False)
    assert _status_with(alice_token) == 401
    with django_capture_on_commit_callbacks(execute=True):
        delete_account(user=bob)
    assert _status_with(bob_token) == 401


# --- passwords ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "complaint"),
    [
        ("short1", b"too short"),
        ("password", b"too common"),
        ("1234567890", b"entirely numeric"),
        ("dora-explorer", b"too similar"),
        ("", b"required"),
    ],
)
def test_weak_passwords_are_refused_at_signup(client, db, password, complaint):
    response = client.post(
        reverse("signup"),
        {"username": "dora-explorer", "email": "dora@example.com", "password1": password, "password2": password},
    )
    assert response.status_code == 200
    assert complaint in response.content.lower()
    assert not User.objects.filter(username="dora-explorer").exists()


def test_weak_passwords_are_refused_on_change(client, alice):
    client.force_login(alice)
    response = client.post(
        reverse("password_change"), {"old_password": PASSWORD, "new_password1": "qwerty", "new_password2": "qwerty"}
    )
    assert response.status_code == 200
    alice.refresh_from_db()
    assert alice.check_password(PASSWORD)


# --- API throttling -----------------------------------------------------------------------------


def test_the_api_throttles_each_user_with_429(settings, fresh_cache, alice, bob, api_alice, api_bob, monkeypatch):
    rates = {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "user": "3/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", rates)  # DRF reads the rates once, at import
    assert [api_alice.get("/api/twins/").status_code for _ in range(3)] == [200, 200, 200]
    refused = api_alice.get("/api/twins/")
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "throttled"
    assert 0 < int(refused["Retry-After"]) <= 60
    assert api_bob.get("/api/twins/").status_code == 200  # per user: bob is not alice


# --- production switches ------------------------------------------------------------------------


def test_production_turns_on_hsts_secure_cookies_and_the_https_redirect(tmp_path):
    code = """
import django, json; django.setup()
from django.conf import settings as s
from django.test import Client
plain = Client().get('/health')
secure = Client().get('/health', secure=True)
print(json.dumps({
    'hsts': s.SECURE_HSTS_SECONDS, 'subdomains': s.SECURE_HSTS_INCLUDE_SUBDOMAINS, 'preload': s.SECURE_HSTS_PRELOAD,
    'ssl_redirect': s.SECURE_SSL_REDIRECT, 'session_secure': s.SESSION_COOKIE_SECURE,
    'csrf_secure': s.CSRF_COOKIE_SECURE, 'httponly': s.SESSION_COOKIE_HTTPONLY, 'debug': s.DEBUG,
    'plain_status': plain.status_code, 'plain_location': plain.get('Location', ''),
    'hsts_header': secure.get('Strict-Transport-Security', ''), 'frame': secure.get('X-Frame-Options', ''),
    'nosniff': secure.get('X-Content-Type-Options', ''),
}))
"""
    result = run_python(
        code,
        env={
            "TWINSITE_ENV": "production",
            "SECRET_KEY": "k" * 60,
            "ALLOWED_HOSTS": "testserver",
            "TWINSITE_DATA_DIR": str(tmp_path),
            "LOG_LEVEL": "error",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        },
    )
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["hsts"] >= 31_536_000 and found["subdomains"] and found["preload"]
    assert found["ssl_redirect"] and found["session_secure"] and found["csrf_secure"] and found["httponly"]
    assert found["debug"] is False
    assert found["plain_status"] == 301 and found["plain_location"].startswith("https://")
    assert "max-age=31536000" in found["hsts_header"]
    assert found["frame"] == "DENY" and found["nosniff"] == "nosniff"


def test_a_new_user_can_sign_up_and_log_in_with_a_good_password(client, db):
    response = client.post(
        reverse("signup"),
        {"username": "erin", "email": "erin@example.com", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response.status_code == 302
    assert Client().login(username="erin", password=PASSWORD)
    assert UserFactory(username="frank")  # the factory's users log in the same way
    assert Client().login(username="frank", password=PASSWORD)
