"""Helpers of the reliability tests: storage scans, raw multipart bodies, a real gunicorn web process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from tests.helpers import ROOT
from tests.workers import database_url

_capture = None  # pytest's capture manager, set by tests/reliability/conftest.py


def report(line: str) -> None:
    """A figure for the closing note: printed to the terminal even while pytest captures output."""
    if _capture is None:
        print(line)
        return
    with _capture.global_and_fixture_disabled():
        print(f"\n{line}", flush=True)


def stored_files(media_root: Path) -> set[str]:
    """Every file under MEDIA_ROOT, as storage names (relative, forward slashes)."""
    return {p.relative_to(media_root).as_posix() for p in Path(media_root).rglob("*") if p.is_file()}


def referenced_files() -> set[str]:
    """Every storage name the database points at."""
    from generation.models import GeneratedImage
    from twins.models import Selfie, Twin

    names = set(Selfie.objects.exclude(image="").values_list("image", flat=True))
    names |= set(Twin.objects.exclude(reference_face="").values_list("reference_face", flat=True))
    names |= set(GeneratedImage.objects.exclude(file="").values_list("file", flat=True))
    return names


def assert_storage_matches_database(media_root: Path) -> None:
    on_disk, in_db = stored_files(media_root), referenced_files()
    assert not in_db - on_disk, f"the database points at missing files: {sorted(in_db - on_disk)}"
    assert not on_disk - in_db, f"orphan files nothing references: {sorted(on_disk - in_db)}"


def multipart(files: Iterable[tuple[str, str, bytes]], fields: dict[str, str] | None = None) -> tuple[bytes, str]:
    """A multipart/form-data body with the file names exactly as given (Django's test client would
    strip directories from them first, hiding what a hostile client can send)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for field, filename, data in files:
        quoted = filename.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{quoted}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def require_postgres(reason: str) -> None:
    if connection.vendor != "postgresql":
        pytest.skip(f"{reason}: needs PostgreSQL (DATABASE_URL=postgres://...), this run uses {connection.vendor}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class WebServer:
    """The web process as deployed: gunicorn on loopback, on the test database, in its own process group."""

    def __init__(self, *, log_path: Path, extra_env: dict[str, str] | None = None, workers: int = 2, threads: int = 4):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "TWIN_MODELS_DIR": str(settings.TWIN_MODELS_DIR),
            "LOG_LEVEL": "warning",
            "LOG_FORMAT": "text",
            **(extra_env or {}),
        }
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "twinsite.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--keep-alive",
            "30",
            "--backlog",
            "2048",
        ]
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gunicorn exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.base_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise AssertionError(f"gunicorn did not answer /health within {timeout:.0f} s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]
