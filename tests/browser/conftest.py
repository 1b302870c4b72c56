"""Browser tests: a live server (a thread of this process), Chromium, and ONE real `gpu` worker process
for all of them (starting one costs a model load), all on the same test database and media folder.

Selfie limits are lowered to fit the LFW photos in ../shared (250 px, 20 of one person).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.support import PHONE, Screenshots, open_page
from tests.conftest import INSIGHTFACE_ROOT, INSIGHTFACE_TEST_PACK, PASSWORD
from tests.workers import Worker

MIN_PHOTOS = 8  # accepted photos a twin needs here (the product's default is 15)
SELFIE_MIN_SIDE = 200  # LFW photos are 250x250


@pytest.fixture(scope="session")
def browser_media_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-media")


@pytest.fixture(autouse=True)
def _isolated_media(settings, browser_media_root: Path) -> Path:
    """Overrides tests/conftest.py: the session's worker process was started with this MEDIA_ROOT."""
    settings.MEDIA_ROOT = browser_media_root
    return browser_media_root


@pytest.fixture(autouse=True)
def _browser_settings(settings) -> None:
    settings.TWIN_MIN_PHOTOS = MIN_PHOTOS
    settings.SELFIE_MIN_SIDE = SELFIE_MIN_SIDE
    settings.INSIGHTFACE_ROOT = INSIGHTFACE_ROOT
    settings.INSIGHTFACE_PACK = INSIGHTFACE_TEST_PACK
    # Accounts made here get real hashed passwords; PBKDF2's cost is not what these tests measure.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="package")
def gpu_worker(django_db_setup, browser_media_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """A real `manage.py qcluster` of the gpu cluster (enrollment and generation), shared by the browser tests.

    Package scope: it stops when the run leaves tests/browser, so it never takes tasks that tests elsewhere
    queue for their own workers. It depends on django_db_setup, so it stops before the test database is dropped.
    """
    if not (INSIGHTFACE_ROOT / "models" / INSIGHTFACE_TEST_PACK).is_dir():
        pytest.skip(f"InsightFace test models not found under {INSIGHTFACE_ROOT}")
    worker = Worker(
        cluster="gpu",
        log_path=tmp_path_factory.mktemp("browser-worker") / "worker.log",
        extra_env={
            "MEDIA_ROOT": str(browser_media_root),
            "INSIGHTFACE_ROOT": str(INSIGHTFACE_ROOT),
            "INSIGHTFACE_PACK": INSIGHTFACE_TEST_PACK,
            "TWIN_MIN_PHOTOS": str(MIN_PHOTOS),
            "SELFIE_MIN_SIDE": str(SELFIE_MIN_SIDE),
        },
    )
    yield worker
    # Not stop(): a cluster with the pipeline loaded sits out stop()'s whole 20 s grace period, and
    # nothing here needs a graceful exit (its database is dropped next).
    worker.kill()


_SCREENSHOT_FOLDERS: list[Path] = []


@pytest.fixture
def shots(request: pytest.FixtureRequest, pytestconfig: pytest.Config) -> Screenshots:
    """Screenshots of this test's steps; each path goes straight to the terminal, past output capture."""
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")

    def write_line(line: str) -> None:
        if reporter is None or capture is None:
            print(line)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    screenshots = Screenshots(request.node.name, write_line)
    _SCREENSHOT_FOLDERS.append(screenshots.folder)
    return screenshots


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _SCREENSHOT_FOLDERS:
        terminalreporter.write_sep("-", "browser screenshots")
        for folder in _SCREENSHOT_FOLDERS:
            terminalreporter.write_line(f"{folder}  ({len(list(folder.glob('*.png')))} PNG files)")


@pytest.fixture
def phone_page(chromium) -> Iterator[tuple[Any, Any, list[str]]]:
    page, context, errors = open_page(chromium, viewport=PHONE)
    yield page, context, errors
    context.close()


@pytest.fixture
def log_in(live_server) -> Callable[[Any, str], None]:
    """Log a page in through the login form, as a person would."""

    def _log_in(page: Any, username: str, password: str = PASSWORD) -> None:
        page.goto(f"{live_server.url}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("main button[type=submit]")
        page.wait_for_url(f"{live_server.url}/")

    return _log_in


def finished_generation(twin: Any, scores: list[float | None]) -> Any:
    """A succeeded generation job of `twin` with one stored PNG per identity score."""
    import io

    from django.core.files.base import ContentFile
    from PIL import Image

    from generation.models import GeneratedImage, GenerationJob
    from tests.factories import GenerationJobFactory

    job = GenerationJobFactory(
        twin=twin, status=GenerationJob.Status.SUCCEEDED, num_images=len(scores), width=64, height=64, backend="tiny"
    )
    for index, score in enumerate(scores):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (90 + 40 * index, 120, 160)).save(buffer, format="PNG")
        image = GeneratedImage(
            job=job,
            index=index,
            seed=job.seed + index,
            identity_score=score,
            width=64,
            height=64,
            score_note="" if score is not None else "No face was found in this image.",
        )
        image.file.save(image.filename, ContentFile(buffer.getvalue()), save=True)
    return job
