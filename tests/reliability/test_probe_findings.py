"""Findings of the outside security probe (issue 16): each answer is a clear 4xx in the app's error
shape, never a 500 or Django's bare 400, and nothing is logged at error level."""

from __future__ import annotations

import logging

import pytest
from rest_framework.test import APIClient

from tests.factories import TwinFactory
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
