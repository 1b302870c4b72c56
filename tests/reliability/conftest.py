"""Fixtures of the reliability tests (faults, hostile input, access, fuzz, load, privacy)."""

from __future__ import annotations

import pytest
from django.core.cache import cache


def pytest_configure(config: pytest.Config) -> None:
    from tests.reliability import support

    support._capture = config.pluginmanager.get_plugin("capturemanager")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # The personas get real hashed passwords; PBKDF2 costs ~0.25 s a user, which these tests never check.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def fresh_cache(db):
    """Throttle counters live in the shared cache; start from none."""
    cache.clear()
    yield cache
    cache.clear()


@pytest.fixture
def world(alice, bob, settings):
    """Alice's objects for the access matrix and the CSRF test (tests/reliability/routes.py)."""
    from tests.reliability.routes import build_world

    settings.GENERATION_MAX_CONCURRENT_JOBS = 100
    return build_world(alice, bob)
