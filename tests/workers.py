"""Real django-q2 worker processes for end-to-end tests, on the test database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from django.conf import settings
from django.db import connection

from tests.helpers import ROOT


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    """`manage.py qcluster` in its own process group, so a test can SIGKILL it and all its children."""

    def __init__(self, *, cluster: str = "gpu", extra_env: dict[str, str] | None = None, log_path: Path):
        self.cluster = cluster
        self.log_path = log_path
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "TWIN_MODELS_DIR": str(settings.TWIN_MODELS_DIR),
            "INSIGHTFACE_ROOT": str(settings.INSIGHTFACE_ROOT),
            "INSIGHTFACE_PACK": settings.INSIGHTFACE_PACK,
            "TWIN_BACKEND": settings.TWIN_BACKEND,
            "Q_CLUSTER_NAME": cluster,
            "Q_POLL": "0.2",
            "LOG_FORMAT": "text",
            **(extra_env or {}),
        }
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """Like a crashed host: SIGKILL the whole process group, no cleanup."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        if not self.log.closed:
            self.log.close()

    def terminate(self) -> None:
        """SIGTERM to the main process only, as a process manager does: it stops its cluster in order.
        (Signalled as a group, django-q2's children die first and the main process hangs.)"""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        self.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):  # nothing of it may outlive the test
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        if not self.log.closed:
            self.log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def stop_workers(workers: Iterable[Worker]) -> None:
    """Stop several workers at once: all are signalled before any is waited for."""
    workers = list(workers)
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.stop()


def wait_for(condition: Callable[[], bool], *, timeout: float, interval: float = 0.25, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
