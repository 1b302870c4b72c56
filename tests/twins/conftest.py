"""Fixtures for the twins tests: a twin of alice's, LFW-friendly limits, uploading real photos."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from tests.factories import TwinFactory
from tests.twins.images import photo_upload
from twins import services
from twins.models import Twin


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    # The personas get real hashed passwords; PBKDF2 costs ~0.25 s a user, which these tests never check.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def twin(alice) -> Twin:
    return TwinFactory(owner=alice, name="Alice")


@pytest.fixture
def lfw(settings, face_models, faces_dir) -> Path:
    """Real models and photos; LFW photos are 250x250, under the default 256 px minimum side."""
    settings.SELFIE_MIN_SIDE = 200
    return faces_dir


@pytest.fixture
def add_photos() -> Callable[..., services.UploadResult]:
    def _add(twin: Twin, paths: Iterable[Path]) -> services.UploadResult:
        return services.add_selfies(twin=twin, uploads=[photo_upload(p, f"{p.parent.name}_{p.name}") for p in paths])

    return _add


@pytest.fixture
def enroll() -> Callable[[Twin], services.EnrollmentResult]:
    """Start and run an enrollment in-process, as the worker would."""

    def _enroll(twin: Twin) -> services.EnrollmentResult:
        services.start_enrollment(twin=twin, enqueue=False)
        result = services.enroll_twin(twin=twin)
        twin.refresh_from_db()
        return result

    return _enroll


def photos(folder: Path, count: int | None = None) -> list[Path]:
    return sorted(folder.glob("*.jpg"))[:count]
