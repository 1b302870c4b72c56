"""Importing a benchmark does nothing: no argument parsing, no environment changes, no ML stack.

benchmarks/e2e.py and notebooks import helpers from the others; an import that parsed
sys.argv or loaded torch would break them or slow them down.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
MODULES = ("generation", "generation_configs", "profiling", "reporting", "compile_cache", "common", "multi_gpu")


def test_importing_the_benchmarks_parses_no_arguments_and_loads_no_ml_library():
    code = (
        "import importlib, os, sys; before = dict(os.environ);"
        f"[importlib.import_module('benchmarks.' + name) for name in {MODULES!r}];"
        "heavy = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules];"
        "changed = sorted(set(os.environ.items()) ^ set(before.items()));"
        "print(heavy, changed); sys.exit(1 if heavy or changed else 0)"
    )
    # An argument no benchmark knows: parsing it at import would exit with status 2.
    result = subprocess.run(
        [sys.executable, "-c", code, "--not-a-benchmark-option"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_generation_benchmark_keeps_its_helpers_importable():
    from benchmarks import generation

    for name in ("save_compile_cache", "load_compile_cache", "load", "run_job", "measure", "profile_unet", "main"):
        assert callable(getattr(generation, name)), name
