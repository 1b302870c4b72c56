"""The web process never loads the ML stack: check in a fresh interpreter after loading every URL."""

from __future__ import annotations

from tests.helpers import run_python

CODE = r"""
import sys
import django
django.setup()
from django.urls import get_resolver
from django.test import Client
get_resolver().url_patterns  # imports every urls/views/api module
import twins.admin, twins.api, twins.views, twins.services, twins.tasks, twins.serializers, twins.faces, twins.intake
import generation.scoring
import django.contrib.admin
django.contrib.admin.autodiscover()
ml = ("torch", "diffusers", "onnxruntime", "insightface", "cv2", "transformers")
heavy = sorted(m for m in ml if m in sys.modules)
print("HEAVY:", ",".join(heavy))
"""


def test_web_process_imports_no_ml_library():
    result = run_python(CODE)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = next(line for line in result.stdout.splitlines() if line.startswith("HEAVY:"))
    assert loaded.removeprefix("HEAVY:").strip() == "", loaded
