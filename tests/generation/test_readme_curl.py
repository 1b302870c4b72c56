"""The README's curl script for the old product's routes runs as written against a live server and worker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.factories import UserFactory
from tests.helpers import ROOT
from tests.reliability.support import WebServer
from tests.workers import Worker

SECTION = "## The old product's routes (curl)"


def readme_script() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(SECTION) :]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, f"no ```bash block under {SECTION!r}"
    return match[1]


def run_script(folder: Path, base_url: str, *, timeout: int) -> subprocess.CompletedProcess:
    """The README block as `old-routes.sh` in `folder`, run with bash against `base_url`."""
    (folder / "old-routes.sh").write_text(readme_script())
    env = {"PATH": os.environ["PATH"], "HOME": str(folder), "BASE": base_url}  # a user's shell, not ours
    return subprocess.run(
        ["bash", "old-routes.sh"], cwd=folder, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_every_curl_in_the_script_fails_on_an_http_error_and_no_id_is_hard_coded() -> None:
    script = readme_script()
    curls = re.findall(r"\bcurl\b[^\n]*", script)
    assert len(curls) >= 6, curls
    assert all(re.search(r"--fail\b|--fail-with-body\b", line) for line in curls), curls
    # The download must not save an error's JSON as a .png: plain --fail writes nothing on an HTTP error.
    assert all("--fail-with-body" not in line for line in curls if " -o " in line)
    assert not re.search(r"twin-\d|/status/\d|/download/\d", script), "ids exist only in an empty database"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_readme_script_runs_against_a_live_server(tmp_path: Path, face_models, faces_dir: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    UserFactory(username="me", password="my password")
    # Small limits so three LFW photos (250 px) make a twin and a generation takes seconds on a CPU.
    env = {"TWIN_MIN_PHOTOS": "3", "SELFIE_MIN_SIDE": "200", "GENERATION_DEFAULT_STEPS": "2"}
    selfies = tmp_path / "selfies"
    selfies.mkdir()
    for path in sorted((faces_dir / "george_w_bush").glob("*.jpg"))[:3]:
        shutil.copy(path, selfies / path.name)
    shutil.copy(faces_dir / "_hard" / "noface_rocket.jpg", selfies / "rocket.jpg")

    web = WebServer(log_path=tmp_path / "web.log", extra_env=env, workers=1, threads=4)
    worker = Worker(cluster="gpu", log_path=tmp_path / "worker.log", extra_env=env)
    try:
        run = run_script(tmp_path, web.base_url, timeout=400)
    finally:
        worker.stop()
        web.stop()
    context = f"stdout:\n{run.stdout}\nstderr:\n{run.stderr}\nworker:\n{worker.output()}\nweb:\n{web.output()}"
    assert run.returncode == 0, context
    assert re.search(r"^rocket\.jpg rejected no_face ", run.stdout, re.MULTILINE), context
    assert re.search(r"^001\.jpg accepted ", run.stdout, re.MULTILINE), context
    for name in ("avatar_001.png", "avatar_002.png"):
        assert (tmp_path / name).read_bytes().startswith(b"\x89PNG\r\n\x1a\n"), name
    assert '"jobs"' in run.stdout


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_readme_script_stops_at_an_http_error(tmp_path: Path) -> None:
    """Wrong password: the token call answers 400, the script stops there and shows the JSON error."""
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    web = WebServer(log_path=tmp_path / "web.log", workers=1, threads=2)
    try:
        run = run_script(tmp_path, web.base_url, timeout=120)
    finally:
        web.stop()
    assert run.returncode != 0, run.stdout
    assert '"error"' in run.stderr, run.stderr
    assert "twin-" not in run.stdout  # nothing after the failed call ran
