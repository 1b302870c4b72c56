"""Shared fixtures: personas, API clients, isolated media, the staged face models and photos."""

from __future__ import annotations

from pathlib import Path

import pytest
from rest_framework.test import APIClient

from tests.factories import UserFactory

PASSWORD = "correct horse battery staple"
SHARED_DIR = Path(__file__).resolve().parent.parent.parent / "shared"
FACES_DIR = SHARED_DIR / "testdata" / "faces"
INSIGHTFACE_ROOT = SHARED_DIR / "models" / "insightface"
INSIGHTFACE_TEST_PACK = "scrfd500m_mbf"


@pytest.fixture(autouse=True)
def _isolated_media(settings, tmp_path: Path) -> Path:
    """Every test writes its files under its own MEDIA_ROOT, so storage scans see only its own files."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture
def media_root(settings) -> Path:
    return Path(settings.MEDIA_ROOT)


@pytest.fixture
def alice(db):
    """The owner in access tests."""
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    """A stranger to alice's data."""
    return UserFactory(username="bob")


@pytest.fixture
def charlie(db):
    """Support staff."""
    return UserFactory(username="charlie", is_staff=True, is_superuser=True)


def _token_client(user) -> APIClient:
    from accounts.services import get_or_create_api_token

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {get_or_create_api_token(user=user).key}")
    return client


@pytest.fixture
def api_alice(alice) -> APIClient:
    return _token_client(alice)


@pytest.fixture
def api_bob(bob) -> APIClient:
    return _token_client(bob)


@pytest.fixture
def api_charlie(charlie) -> APIClient:
    return _token_client(charlie)


@pytest.fixture
def faces_dir() -> Path:
    if not FACES_DIR.is_dir():
        pytest.skip(f"real test photos not found at {FACES_DIR} (see shared/testdata/faces/SOURCES.md)")
    return FACES_DIR


@pytest.fixture
def face_models(settings) -> Path:
    """Point the face adapter at the small real InsightFace pack staged in ../shared."""
    pack_dir = INSIGHTFACE_ROOT / "models" / INSIGHTFACE_TEST_PACK
    if not pack_dir.is_dir():
        pytest.skip(f"InsightFace test models not found at {pack_dir} (see shared/models/insightface/SOURCES.md)")
    settings.INSIGHTFACE_ROOT = INSIGHTFACE_ROOT
    settings.INSIGHTFACE_PACK = INSIGHTFACE_TEST_PACK
    return pack_dir


@pytest.fixture
def chromium(monkeypatch):
    """Debian's Chromium, headless, through Playwright: the one way browser tests start a browser."""
    from django.db import connections

    from tests.browser.support import launch_chromium

    with launch_chromium(monkeypatch) as browser:
        yield browser
        # Playwright runs the test in a greenlet with its own context, so the ORM connection the test
        # opened is not the one Django closes at the end; left open, PostgreSQL refuses to drop the test DB.
        connections.close_all()


@pytest.fixture
def browser_page(chromium):
    """(page, context, errors) at desktop size; `errors` collects page exceptions and console errors."""
    from tests.browser.support import open_page

    page, context, errors = open_page(chromium)
    yield page, context, errors
    context.close()
