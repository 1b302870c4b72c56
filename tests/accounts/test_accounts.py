from __future__ import annotations

import pytest
from django.contrib.sessions.models import Session
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from accounts.models import User
from accounts.services import get_or_create_api_token
from tests.conftest import PASSWORD


@pytest.mark.django_db
def test_signup_logs_in_and_shows_the_empty_dashboard(client):
    response = client.post(
        "/signup/",
        {"username": "dora", "email": "dora@example.com", "password1": PASSWORD, "password2": PASSWORD},
        follow=True,
    )
    assert response.status_code == 200
    assert User.objects.filter(username="dora").exists()
    assert response.context["user"].username == "dora"
    assert b"No twins yet" in response.content


@pytest.mark.django_db
def test_signup_rejects_a_weak_password_with_a_message(client):
    response = client.post("/signup/", {"username": "dora", "password1": "123", "password2": "123"})
    assert response.status_code == 200
    assert not User.objects.filter(username="dora").exists()
    assert b"too short" in response.content


def test_login_stores_the_session_in_the_database_and_logout_ends_it(client, alice):
    response = client.post("/login/", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    session_key = client.cookies["sessionid"].value
    session = Session.objects.get(session_key=session_key)
    assert session.get_decoded()["_auth_user_id"] == str(alice.pk)

    client.post("/logout/")
    assert not Session.objects.filter(session_key=session_key).exists()
    assert client.get("/").status_code == 302


def test_login_with_a_wrong_password_says_so(client, alice):
    response = client.post("/login/", {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content


def test_dashboard_requires_login(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_password_change(client, alice):
    client.force_login(alice)
    response = client.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password1": "another fine pass 42", "new_password2": "another fine pass 42"},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("another fine pass 42")


def _token_status(key: str) -> int:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return api.get("/api/twins/").status_code


def test_changing_the_password_replaces_the_api_token(client, alice):
    old_key = get_or_create_api_token(user=alice).key
    assert _token_status(old_key) == 200
    client.force_login(alice)
    assert b"Changing your password also replaces this token" in client.get("/settings/").content

    response = client.post(
        "/account/password/",
        {"old_password": PASSWORD, "new_password1": "another fine pass 42", "new_password2": "another fine pass 42"},
        follow=True,
    )
    assert b"Your API token was replaced too" in response.content
    new_key = Token.objects.get(user=alice).key
    assert new_key != old_key
    assert _token_status(old_key) == 401  # whoever had the old password and its token loses both
    assert _token_status(new_key) == 200
    assert new_key.encode() in client.get("/settings/").content  # this browser stays logged in


def test_a_refused_password_change_keeps_the_token(client, alice):
    old_key = get_or_create_api_token(user=alice).key
    client.force_login(alice)
    response = client.post(
        "/account/password/",
        {"old_password": "not it", "new_password1": "another fine pass 42", "new_password2": "another fine pass 42"},
    )
    assert response.status_code == 200
    assert _token_status(old_key) == 200


def test_staff_setting_a_password_in_the_admin_replaces_the_token(client, alice, charlie):
    old_key = get_or_create_api_token(user=alice).key
    client.force_login(charlie)
    response = client.post(
        f"/admin/accounts/user/{alice.pk}/password/",
        {"usable_password": "true", "password1": "another fine pass 42", "password2": "another fine pass 42"},
    )
    assert response.status_code == 302
    alice.refresh_from_db()
    assert alice.check_password("another fine pass 42")
    assert _token_status(old_key) == 401


def test_obtain_token_with_username_and_password(alice):
    response = APIClient().post("/api/auth/token/", {"username": "alice", "password": PASSWORD}, format="json")
    assert response.status_code == 200
    assert response.json()["token"] == Token.objects.get(user=alice).key


def test_obtain_token_with_bad_credentials_is_a_json_error(alice):
    response = APIClient().post("/api/auth/token/", {"username": "alice", "password": "nope"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_obtain_token_with_missing_fields_names_them(db):
    response = APIClient().post("/api/auth/token/", {}, format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"username", "password"}


@pytest.mark.parametrize("header", [None, "Token not-a-real-token", "Bearer x"])
def test_api_without_a_valid_token_is_401_json(db, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/twins/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] in {"not_authenticated", "authentication_failed"}


def test_token_page_shows_and_rotates_the_token(client, alice, api_alice):
    old_key = Token.objects.get(user=alice).key
    client.force_login(alice)
    assert old_key.encode() in client.get("/account/token/").content

    client.post("/account/token/rotate/")
    new_key = Token.objects.get(user=alice).key
    assert new_key != old_key
    assert new_key.encode() in client.get("/account/token/").content
    assert api_alice.get("/api/twins/").status_code == 401  # the old token is revoked


def test_rotate_token_through_the_api(api_alice, alice):
    old_key = Token.objects.get(user=alice).key
    response = api_alice.post("/api/auth/token/rotate/")
    assert response.status_code == 200
    assert response.json()["token"] != old_key


def test_admin_is_for_staff_only(client, alice, charlie):
    client.force_login(alice)
    assert client.get("/admin/").status_code == 302
    client.force_login(charlie)
    assert client.get("/admin/accounts/user/").status_code == 200


def test_request_id_is_echoed_and_logged_as_json(client, db, capsys):
    import json
    import logging

    response = client.get("/health", HTTP_X_REQUEST_ID="req-123")
    assert response["X-Request-ID"] == "req-123"
    from twinsite.logging import JsonFormatter, RequestIdFilter, request_id_var

    token = request_id_var.set("req-456")
    try:
        record = logging.makeLogRecord({"msg": "hello %s", "args": ("world",), "levelname": "INFO", "job": 7})
        RequestIdFilter().filter(record)
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello world"
    assert line["request_id"] == "req-456"
    assert line["job"] == 7


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/login/", "/signup/"])
def test_login_and_signup_describe_themselves_to_search_engines(client, path):
    import re

    page = client.get(path).content.decode()
    descriptions = re.findall(r'<meta name="description" content="([^"]+)">', page)
    assert len(descriptions) == 1 and len(descriptions[0]) >= 50, descriptions
    assert "Log in" in descriptions[0] if path == "/login/" else "account" in descriptions[0]


def test_every_help_text_that_an_input_points_at_is_on_the_page(client, alice):
    """Inputs name their help in aria-describedby; a screen reader reads it only if that id exists."""
    import re

    from tests.factories import TwinFactory

    twin = TwinFactory(owner=alice, ready=True)
    pages = {"/signup/": client.get("/signup/").content.decode()}
    client.force_login(alice)
    for path in [f"/twins/{twin.pk}/generate/new/", "/account/password/"]:
        pages[path] = client.get(path).content.decode()
    described = 0
    for path, page in pages.items():
        for ids in re.findall(r'aria-describedby="([^"]+)"', page):
            for target in ids.split():
                described += 1
                assert f'id="{target}"' in page, f"{path}: nothing has id={target}"
    assert described >= 4  # the password rules (signup, change) and the seed hint are among them
    assert 'id="id_password1_helptext"' in pages["/signup/"]
    assert 'id="id_seed_helptext"' in pages[f"/twins/{twin.pk}/generate/new/"]
