"""Lighter pages: HTML goes out gzipped (except where a secret sits in it: BREACH), and with DEBUG off the
static files are hashed, pre-compressed and cached for good (served so by `./twinsite.sh start`:
tests/deploy/test_start_supervision.py)."""

from __future__ import annotations

import gzip

import pytest

from tests.factories import TwinFactory
from tests.helpers import run_python

GZIP = {"HTTP_ACCEPT_ENCODING": "gzip, deflate, br"}


def test_pages_go_out_gzipped(client, alice):
    twin = TwinFactory(owner=alice, ready=True)
    login = client.get("/login/", **GZIP)
    assert login["Content-Encoding"] == "gzip" and "Accept-Encoding" in login["Vary"]
    assert b"<h1>Log in</h1>" in gzip.decompress(login.content)
    client.force_login(alice)
    page = client.get(f"/twins/{twin.pk}/", **GZIP)
    assert page["Content-Encoding"] == "gzip"
    assert len(page.content) * 3 < len(gzip.decompress(page.content))


def test_pages_that_hold_a_secret_and_non_html_answers_are_not_compressed(client, alice, charlie):
    client.force_login(alice)
    settings_page = client.get("/settings/", **GZIP)  # shows the API token: BREACH
    assert settings_page.status_code == 200 and "Content-Encoding" not in settings_page
    assert alice.auth_token.key in settings_page.content.decode()
    assert "Content-Encoding" not in client.get("/api/twins/", **GZIP)  # JSON: not what this is for
    client.force_login(charlie)  # staff: the admin lists API tokens next to its search box
    admin = client.get("/admin/authtoken/tokenproxy/?q=abc", **GZIP)
    assert admin.status_code == 200 and "Content-Encoding" not in admin


@pytest.mark.parametrize(
    ("env", "backend"),
    [
        ({"DEBUG": "0"}, "whitenoise.storage.CompressedManifestStaticFilesStorage"),
        ({"DEBUG": "1"}, "django.contrib.staticfiles.storage.StaticFilesStorage"),
        (
            {"TWINSITE_ENV": "production", "SECRET_KEY": "x" * 50},
            "whitenoise.storage.CompressedManifestStaticFilesStorage",
        ),
        (
            {"TWINSITE_ENV": "production", "SECRET_KEY": "x" * 50, "DEBUG": "1"},
            "django.contrib.staticfiles.storage.StaticFilesStorage",
        ),
    ],
)
def test_static_files_storage_follows_debug(env, backend, tmp_path):
    code = "from django.conf import settings; print(settings.STORAGES['staticfiles']['BACKEND'])"
    result = run_python(code, env={**env, "TWINSITE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == backend
