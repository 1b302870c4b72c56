"""`./twinsite.sh start` keeps its workers running: a crashed worker is restarted, the web server stays up,
and stopping the script (or losing the web server) leaves no process behind.

Each test runs the real script on a fresh data dir and a free port. It uses the project's virtualenv
through a stand-in TWINSITE_VENV whose install stamp is already there, so nothing is reinstalled.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import signal
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import INSIGHTFACE_ROOT, INSIGHTFACE_TEST_PACK
from tests.helpers import ROOT
from tests.reliability.support import free_port
from tests.workers import wait_for

pytestmark = pytest.mark.slow

_RUNNING = re.compile(r"the (default|gpu) worker is running \(pid (\d+)\)")


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    state, ppid, pgrp = text.rsplit(")", 1)[1].split()[:3]
    return state, int(ppid), int(pgrp)


def _processes() -> dict[int, tuple[str, int, int]]:
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _proc_stat(int(entry.name))) is not None:
            table[int(entry.name)] = stat
    return table


def alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"  # a zombie has exited; only its parent's bookkeeping is left


def descendants(pid: int) -> set[int]:
    table = _processes()
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, (_, ppid, _) in table.items() if ppid in frontier} - found
        found |= frontier
    return found


def group_members(pgrp: int) -> set[int]:
    return {pid for pid, (state, _, group) in _processes().items() if group == pgrp and state != "Z"}


def health(base_url: str) -> int:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0


@dataclass
class Started:
    process: subprocess.Popen
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self, name: str) -> list[int]:
        return [int(pid) for worker, pid in _RUNNING.findall(self.log()) if worker == name]


@pytest.fixture
def started(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Started]:
    """`./twinsite.sh start`, up with both workers; indirect parametrization adds environment variables."""
    stamp = subprocess.run(
        ["bash", "-c", "cat requirements*.txt | sha256sum | cut -c1-16"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f'#!/bin/sh\nexec "{ROOT / ".venv" / "bin" / "python"}" "$@"\n')
    (venv / "bin" / "python").chmod(0o755)
    (venv / f".installed-{stamp}-requirements.txt").touch()  # setup_python: already installed

    port = free_port()
    env = {key: value for key, value in os.environ.items() if key not in {"DATABASE_URL", "Q_BROKER"}}
    env |= {
        "TWINSITE_VENV": str(venv),
        "TWINSITE_DATA_DIR": str(tmp_path / "data"),
        "TWINSITE_ADDR": f"127.0.0.1:{port}",
        "ADMIN_PASSWORD": "supervision-test",
        "INSIGHTFACE_ROOT": str(INSIGHTFACE_ROOT),
        "INSIGHTFACE_PACK": INSIGHTFACE_TEST_PACK,
        "Q_WORKERS": "1",
        "Q_GPU_WORKERS": "1",
        "TWIN_WARM_UP": "false",
        "LOG_FORMAT": "text",
        **getattr(request, "param", {}),
    }
    log_path = tmp_path / "start.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            ["./twinsite.sh", "start"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    run = Started(process=process, base_url=f"http://127.0.0.1:{port}", log_path=log_path)
    tree: set[int] = set()
    try:

        def up() -> bool:
            if process.poll() is not None:
                pytest.fail(f"./twinsite.sh start exited with {process.returncode}:\n{run.log()[-5000:]}")
            tree.update(descendants(process.pid))
            return health(run.base_url) == 200 and bool(run.worker_pids("default") and run.worker_pids("gpu"))

        wait_for(up, timeout=300, interval=0.5, what="the web server and both workers")
        yield run
    finally:
        # Whatever the test left running dies here, workers' own process groups included.
        tree |= descendants(process.pid)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for pid in [*tree, *run.worker_pids("default"), *run.worker_pids("gpu")]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)


def test_a_killed_worker_is_restarted_while_the_web_server_answers_and_term_stops_everything(
    started: Started,
) -> None:
    (gpu,), (default,) = started.worker_pids("gpu"), started.worker_pids("default")
    wait_for(lambda: len(descendants(gpu)) > 0, timeout=120, what="the gpu cluster's own processes")
    os.kill(gpu, signal.SIGKILL)  # the main qcluster process only, as a crash leaves it: its children orphaned

    def restarted() -> bool:
        assert health(started.base_url) == 200, "the web server stopped answering when a worker died"
        assert started.process.poll() is None, started.log()[-5000:]
        return len(started.worker_pids("gpu")) == 2

    wait_for(restarted, timeout=120, interval=0.5, what="the gpu worker to be restarted")
    log = started.log()
    assert re.search(r"the gpu worker exited with status \d+; restarting it in 1 s", log), log[-5000:]
    new_gpu = started.worker_pids("gpu")[1]
    assert new_gpu != gpu and alive(new_gpu)
    assert group_members(gpu) == set(), "the crashed worker's children outlived it"
    assert started.worker_pids("default") == [default] and alive(default), "the other worker was disturbed"
    assert health(started.base_url) == 200

    wait_for(lambda: len(descendants(new_gpu)) > 0, timeout=120, what="the new gpu cluster's processes")
    tree = descendants(started.process.pid)
    assert {default, new_gpu} <= tree
    started.process.send_signal(signal.SIGTERM)
    assert started.process.wait(timeout=120) == 0, started.log()[-5000:]
    wait_for(lambda: not any(alive(pid) for pid in tree), timeout=30, what="every child to exit")
    assert group_members(default) == set() and group_members(new_gpu) == set()
    assert health(started.base_url) == 0


def test_when_the_web_server_dies_everything_stops_with_an_error(started: Started) -> None:
    workers = [*started.worker_pids("default"), *started.worker_pids("gpu")]
    tree = descendants(started.process.pid)
    web = [pid for pid in tree if "runserver" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]
    assert len(web) == 1, web
    os.kill(web[0], signal.SIGKILL)
    assert started.process.wait(timeout=120) != 0, started.log()[-5000:]
    assert "the web server exited" in started.log()
    wait_for(lambda: not any(alive(pid) for pid in tree), timeout=30, what="every child to exit")
    assert all(group_members(pid) == set() for pid in workers)


def test_ctrl_c_stops_everything(started: Started) -> None:
    """A terminal's Ctrl-C sends SIGINT to the whole foreground process group, not just the script."""
    workers = [*started.worker_pids("default"), *started.worker_pids("gpu")]
    wait_for(lambda: all(descendants(pid) for pid in workers), timeout=120, what="both clusters' processes")
    tree = descendants(started.process.pid)
    os.killpg(started.process.pid, signal.SIGINT)
    assert started.process.wait(timeout=120) == 0, started.log()[-5000:]
    wait_for(lambda: not any(alive(pid) for pid in tree), timeout=30, what="every child to exit")
    assert all(group_members(pid) == set() for pid in workers)


@pytest.mark.parametrize("started", [{"DEBUG": "0"}], indirect=True)
def test_with_debug_off_start_serves_hashed_compressed_long_cached_static_files_and_gzipped_pages(
    started: Started,
) -> None:
    def get(path: str) -> tuple[dict[str, str], bytes]:
        request = urllib.request.Request(started.base_url + path, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return dict(response.headers), response.read()

    headers, body = get("/login/")
    assert headers["Content-Encoding"] == "gzip"
    css = re.search(r'href="(/static/css/app\.[0-9a-f]{12}\.css)"', gzip.decompress(body).decode())
    assert css, "the page links no hashed stylesheet: collectstatic did not run"
    headers, _ = get(css.group(1))
    assert headers["Content-Encoding"] == "gzip"
    assert "immutable" in headers["Cache-Control"] and "max-age=315360000" in headers["Cache-Control"]
    assert "collecting static files" in started.log()
