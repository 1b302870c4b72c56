"""Login throttling per (username, client address) and per address, the client address behind
trusted proxies (TRUSTED_PROXY_COUNT), and the API throttles that count by the same address."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
from django.contrib.auth import authenticate
from django.test import Client, RequestFactory
from django.urls import get_resolver, reverse
from rest_framework.test import APIClient

from accounts import throttles
from accounts.models import User
from tests.conftest import PASSWORD
from twinsite.client_address import client_address
from twinsite.throttling import _ClientAddressIdent

# --- login throttling ---------------------------------------------------------------------------


@pytest.fixture
def throttle(settings, fresh_cache):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 8
    settings.LOGIN_LOCKOUT_SECONDS = 60
    settings.TRUSTED_PROXY_COUNT = 0
    return settings


@pytest.fixture
def clock(monkeypatch):
    """The throttle's clock only (the cache entries' own expiry stays real, and far away)."""
    now = [time.time()]
    monkeypatch.setattr(throttles, "time", SimpleNamespace(time=lambda: now[0]))
    return now


PROXY = "10.0.0.254"


def _login(username: str, password: str, ip: str = "10.0.0.1", forwarded: str | None = None):
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    return Client(REMOTE_ADDR=ip, **headers).post(reverse("login"), {"username": username, "password": password})


def test_login_is_refused_after_repeated_failures_even_with_the_right_password(throttle, alice, monkeypatch):
    for _ in range(3):
        assert _login("alice", "wrong").status_code == 200
    checks = []
    real_check = User.check_password
    monkeypatch.setattr(User, "check_password", lambda self, raw: checks.append(raw) or real_check(self, raw))
    blocked = _login("alice", PASSWORD)
    assert blocked.status_code == 429
    assert b"Too many failed sign-in attempts" in blocked.content
    assert "_auth_user_id" not in blocked.wsgi_request.session
    assert checks == []  # blocked before any password is hashed

    # The same account from another address is not locked out by this one.
    assert _login("alice", PASSWORD, ip="10.0.0.2").status_code == 302


def test_the_block_lifts_after_the_lockout(throttle, alice, monkeypatch):
    for _ in range(3):
        _login("alice", "wrong")
    assert _login("alice", PASSWORD).status_code == 429
    later = time.time() + throttle.LOGIN_LOCKOUT_SECONDS + 1
    monkeypatch.setattr(throttles, "time", SimpleNamespace(time=lambda: later))  # the throttle's clock only
    assert _login("alice", PASSWORD).status_code == 302


def test_a_success_clears_the_count(throttle, alice):
    for _ in range(2):
        _login("alice", "wrong")
    assert _login("alice", PASSWORD).status_code == 302
    for _ in range(2):
        _login("alice", "wrong")
    assert _login("alice", PASSWORD).status_code == 302


def test_one_address_trying_many_usernames_is_blocked(throttle, alice):
    for n in range(7):  # each a different name, each under the per-username limit
        _login(f"nobody{n}", "guess")
    assert _login("alice", PASSWORD).status_code == 302  # 7 of LOGIN_ADDRESS_FAILURE_LIMIT=8: not yet
    _login("nobody7", "guess")
    assert _login("alice", PASSWORD).status_code == 429
    assert _login("alice", PASSWORD, ip="10.0.0.9").status_code == 302


def test_an_attempt_during_the_lockout_does_not_extend_it(throttle, alice, charlie, clock):
    for user in ("alice", "charlie"):
        for _ in range(3):
            _login(user, "wrong")
    clock[0] += 50  # inside the 60 s lockout: every way in refuses, and none of them counts
    assert _login("alice", PASSWORD).status_code == 429
    assert _login("alice", "wrong").status_code == 429
    assert (
        Client(REMOTE_ADDR="10.0.0.1")
        .post(reverse("admin:login"), {"username": "charlie", "password": PASSWORD})
        .status_code
        == 429
    )
    token_api = APIClient(REMOTE_ADDR="10.0.0.1")
    assert token_api.post("/api/auth/token/", {"username": "alice", "password": "wrong"}).status_code == 429
    request = RequestFactory().post("/", REMOTE_ADDR="10.0.0.1")
    assert authenticate(request, username="alice", password="wrong") is None
    assert authenticate(request, username="charlie", password="wrong") is None

    clock[0] += 11  # 61 s after the last failure that counted
    assert _login("alice", PASSWORD).status_code == 302
    assert _login("charlie", PASSWORD).status_code == 302


def test_behind_the_trusted_proxy_each_client_has_its_own_count(throttle, alice, caplog):
    throttle.TRUSTED_PROXY_COUNT = 1
    for _ in range(3):
        _login("alice", "wrong", ip=PROXY, forwarded="203.0.113.7")
    locked = [r for r in caplog.records if r.getMessage() == "sign-in locked"]
    assert [r.client_address for r in locked] == ["203.0.113.7"]  # the log names the client, not the proxy
    assert _login("alice", PASSWORD, ip=PROXY, forwarded="203.0.113.7").status_code == 429
    # A forged hop in front of what the proxy wrote changes nothing.
    assert _login("alice", PASSWORD, ip=PROXY, forwarded="198.51.100.1, 203.0.113.7").status_code == 429
    # Alice herself, elsewhere, through the same proxy, is not locked out by the attacker.
    assert _login("alice", PASSWORD, ip=PROXY, forwarded="198.51.100.9").status_code == 302
    # Many usernames from one client don't lock out the proxy's other clients either.
    for n in range(8):
        _login(f"nobody{n}", "guess", ip=PROXY, forwarded="203.0.113.8")
    assert _login("alice", PASSWORD, ip=PROXY, forwarded="203.0.113.8").status_code == 429
    assert _login("alice", PASSWORD, ip=PROXY, forwarded="198.51.100.10").status_code == 302


@pytest.mark.parametrize(
    ("proxies", "remote", "forwarded", "client"),
    [
        (0, "10.0.0.1", "203.0.113.7", "10.0.0.1"),  # no trusted proxy: the header is the client's say-so
        (1, PROXY, "203.0.113.7", "203.0.113.7"),
        (1, PROXY, "1.2.3.4, 203.0.113.7", "203.0.113.7"),  # the right-most hop the proxy wrote
        (2, PROXY, "1.2.3.4,203.0.113.7, 10.0.0.9", "203.0.113.7"),  # a balancer in front of the proxy
        (1, PROXY, None, PROXY),  # no header: the request came round the proxy
        (2, PROXY, "203.0.113.7", "203.0.113.7"),  # fewer hops than proxies: the furthest known
        (1, PROXY, "not-an-address", PROXY),
        (1, PROXY, "2001:DB8::1", "2001:db8::1"),
    ],
)
def test_the_client_address_is_the_right_most_untrusted_hop(settings, proxies, remote, forwarded, client):
    settings.TRUSTED_PROXY_COUNT = proxies
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    assert client_address(RequestFactory().get("/", REMOTE_ADDR=remote, **headers)) == client


def test_the_token_exchange_and_the_admin_login_are_throttled_too(throttle, charlie):
    api = APIClient(REMOTE_ADDR="10.0.0.1")
    for _ in range(3):
        assert api.post("/api/auth/token/", {"username": "charlie", "password": "wrong"}).status_code == 400
    response = api.post("/api/auth/token/", {"username": "charlie", "password": PASSWORD})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) > 0
    admin = Client(REMOTE_ADDR="10.0.0.1").post(reverse("admin:login"), {"username": "charlie", "password": PASSWORD})
    assert admin.status_code == 429  # the login form again, saying why, not the redirect into the admin
    assert b"Too many failed sign-in attempts" in admin.content
    assert b"correct username and password" not in admin.content
    assert "_auth_user_id" not in admin.wsgi_request.session


# --- API throttles by client address ------------------------------------------------------------


def test_a_forged_forwarded_header_does_not_reset_the_token_throttle(settings, fresh_cache, db):
    settings.TRUSTED_PROXY_COUNT = 0
    api = APIClient(REMOTE_ADDR="10.0.0.1")
    # No password: refused by validation, so only DRF's "token" throttle (20/min) counts these.
    codes = [
        api.post("/api/auth/token/", {"username": "x"}, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code
        for n in range(25)
    ]
    assert codes == [400] * 20 + [429] * 5


def test_behind_the_trusted_proxy_the_token_throttle_counts_each_client(settings, fresh_cache, db):
    settings.TRUSTED_PROXY_COUNT = 1
    api = APIClient(REMOTE_ADDR=PROXY)
    codes = [
        api.post("/api/auth/token/", {"username": "x"}, HTTP_X_FORWARDED_FOR=f"1.2.3.{n}, 203.0.113.7").status_code
        for n in range(21)
    ]
    assert codes == [400] * 20 + [429]
    assert api.post("/api/auth/token/", {"username": "x"}, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 400


def test_every_api_throttle_reads_the_client_address_in_one_place(settings):
    views = [p.callback.cls for p in _url_patterns(get_resolver()) if hasattr(p.callback, "cls")]
    throttles_seen = {t for view in views for t in view.throttle_classes}
    assert throttles_seen  # the default ones and the token exchange's
    for throttle_class in throttles_seen:
        assert throttle_class.get_ident is _ClientAddressIdent.get_ident, throttle_class


def _url_patterns(resolver):
    for pattern in resolver.url_patterns:
        if hasattr(pattern, "url_patterns"):
            yield from _url_patterns(pattern)
        else:
            yield pattern
