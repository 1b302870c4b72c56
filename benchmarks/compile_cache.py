"""torch's portable compile cache ("mega-cache"), packed with xz: saved by one run, loaded by the next.

A compiled UNet takes minutes to compile from an empty cache; a run that loads an earlier
run's cache measures what a worker with a warm cache pays.
"""

from __future__ import annotations

import lzma
import time
from pathlib import Path

from benchmarks.common import log

COMPILE_CACHE_NAME = "compile-cache.xz"


def save_compile_cache(out_dir: Path) -> Path | None:
    """This process's compile artifacts to `out_dir`/compile-cache.xz (for --compile-cache-in next time)."""
    import torch

    saved = torch.compiler.save_cache_artifacts()
    if not saved:
        return None
    data, _info = saved
    target = Path(out_dir) / COMPILE_CACHE_NAME
    target.write_bytes(lzma.compress(data, preset=6))
    log("compile cache saved:", round(len(data) / 1e6, 1), "MB raw")
    return target


def load_compile_cache(path: str | Path) -> float:
    """Load a saved compile cache into this process before anything compiles; the seconds it took."""
    import torch

    started = time.perf_counter()
    torch.compiler.load_cache_artifacts(lzma.decompress(Path(path).read_bytes()))
    seconds = time.perf_counter() - started
    log("compile cache loaded from", path, "in", round(seconds, 1), "s")
    return seconds
