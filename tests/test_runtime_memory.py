"""runtime/memory.py: the allocator settings for large images, checked on the process's RSS in a
child (the settings are process-wide: the test process keeps its own)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")

CHILD = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    from img2img.runtime.memory import release_free_memory, tune_for_large_images

    def rss_mb():
        return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    ok = tune_for_large_images(sys.argv[1])
    base = rss_mb()
    blocks = [np.ones(32 * 2**20, np.uint8) for _ in range(6)]  # 192 MB in tile-sized blocks, touched
    keeper = np.ones(2**20, np.uint8)  # from the heap, after them: what they free is not at its top
    held = rss_mb()
    del blocks
    freed = rss_mb()
    release_free_memory()
    print(json.dumps({"ok": ok, "held": held - base, "freed": freed - base, "released": rss_mb() - base}))
    """
)


def child(backend: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", CHILD, backend], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_onnx_setting_returns_large_blocks_at_once():
    """ONNX Runtime's setting: tile-sized blocks are mapped, and freeing them gives them back."""
    r = child("onnx")
    assert r["ok"] and r["held"] > 180 and r["freed"] < 20


def test_torch_setting_keeps_freed_blocks_until_released():
    """PyTorch's setting: freed tile-sized blocks stay in the heap for reuse (no page faults on
    the next tile) until release_free_memory() hands them back between images."""
    r = child("torch")
    assert r["ok"] and r["held"] > 180 and r["freed"] > 180 and r["released"] < 20
