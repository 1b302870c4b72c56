from __future__ import annotations

import secrets

import pytest

from tests.helpers import run_manage, run_python


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("Q_WORKERS", "many"),
        ("TWIN_BACKEND", "gpt"),
        ("STORAGE_BACKEND", "ftp"),
        ("TWIN_MIN_PHOTOS", "0"),
        ("Q_BROKER", "amqp://x"),
        # Images per pipeline call: at least 1, at most the seeds one job can have (4 images x best of 4).
        ("TWIN_MAX_BATCH_IMAGES", "0"),
        ("TWIN_MAX_BATCH_IMAGES", "17"),
        ("TWIN_MAX_BATCH_IMAGES", "four"),
    ],
)
def test_bad_setting_fails_at_startup_naming_the_variable(variable, value, tmp_path):
    result = run_python("import django; django.setup()", env={variable: value, "TWINSITE_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert variable in result.stderr


def test_production_requires_a_secret_key(tmp_path):
    result = run_python(
        "import django; django.setup()", env={"TWINSITE_ENV": "production", "TWINSITE_DATA_DIR": str(tmp_path)}
    )
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_development_secret_key_is_generated_once_and_kept(tmp_path):
    code = "from django.conf import settings; print(settings.SECRET_KEY)"
    first = run_python(code, env={"TWINSITE_DATA_DIR": str(tmp_path)})
    second = run_python(code, env={"TWINSITE_DATA_DIR": str(tmp_path)})
    assert first.returncode == 0, first.stderr
    assert first.stdout == second.stdout
    assert len(first.stdout.strip()) >= 50
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_secret_key_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-a-container-secret-" + "x" * 40)
    result = run_python(
        "from django.conf import settings; print(settings.SECRET_KEY)",
        env={"SECRET_KEY_FILE": str(key_file), "TWINSITE_DATA_DIR": str(tmp_path)},
    )
    assert result.stdout.strip().startswith("from-a-container-secret-")


def test_deploy_check_is_clean_with_production_settings(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        env={
            "TWINSITE_ENV": "production",
            "SECRET_KEY": secrets.token_urlsafe(60),
            "ALLOWED_HOSTS": "twinsite.example",
            "TWINSITE_DATA_DIR": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_migrations_are_up_to_date(tmp_path):
    result = run_manage("makemigrations", "--check", "--dry-run", env={"TWINSITE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_web_process_never_imports_the_ml_stack(tmp_path):
    # Load every URL pattern's view and the WSGI app in a clean interpreter.
    code = """
import sys
from twinsite.wsgi import application
from django.urls import get_resolver, URLPattern, URLResolver

def walk(resolver):
    for p in resolver.url_patterns:
        if isinstance(p, URLResolver):
            walk(p)
        else:
            p.callback
walk(get_resolver())
import accounts.admin, twins.admin, generation.admin  # the admin site is loaded by the web process too
from django.contrib import admin
admin.autodiscover()
ML = ("torch", "diffusers", "onnxruntime", "insightface", "transformers", "cv2")
heavy = sorted(m for m in ML if m in sys.modules)
print("HEAVY", heavy)
"""
    result = run_python(code, env={"TWINSITE_DATA_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout, result.stdout
