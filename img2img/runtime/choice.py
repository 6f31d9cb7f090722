"""backend auto for an exported .onnx: PyTorch's bf16 path where it is measurably faster on this
machine and keeps the quality bar; ONNX Runtime fp32 everywhere else.

A CPU with native bf16 (AMX or AVX512-BF16) gives PyTorch's oneDNN bf16 kernels up to twice the
multiply-adds per instruction of fp32. Whether that beats ONNX Runtime depends on the network
and the CPU (docs/inference.md: the ResNet-9 1.73x faster on a Zen 4 EPYC, the U-Net slower than
ONNX Runtime), so it is measured, once per machine. The candidate exists when the generator's
G_<direction>.safetensors lies beside the .onnx with the same generator and direction (the
shipped models). Both backends translate a PROBE_SIDE² probe image, interleaved; PyTorch is taken when
it is at least MIN_SPEEDUP faster and its output is at least MIN_PSNR dB from ONNX Runtime's.
The verdict is cached in $IMG2IMG_CACHE (default ~/.cache/img2img)/backend_choice.json, keyed
by both files' size and mtime, the CPU, the threads and the library versions, so later runs
start at once.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from img2img import __version__
from img2img.card import ModelCard, read_generator_metadata
from img2img.devices import cpu_model, native_bf16
from img2img.io import atomic_write, from_unit, to_unit
from img2img.rundir import generator_file
from img2img.runtime.pixels import prepare

CACHE_ENV = "IMG2IMG_CACHE"
CACHE_FILE = "backend_choice.json"
CACHE_ENTRIES = 64     # verdicts kept (the oldest go first)
PROBE_SIDE = 256       # the benchmark's size (benchmarks/inference_speed.py)
ROUNDS = 3             # timed runs per backend; the fastest counts
PAUSE_S = 0.2          # before each timed run: ONNX Runtime's spinning threads slow whatever runs next
MIN_SPEEDUP = 1.1      # below this the measurement is within noise: keep the reference path
MIN_PSNR = 40.0        # dB against ONNX Runtime fp32 (issue 15's quality bar)


@dataclass(frozen=True)
class Verdict:
    backend: str       # onnx | torch
    onnx_ms: float
    torch_ms: float
    psnr_db: float

    def describe(self, cached: bool) -> str:
        name = {"onnx": "ONNX Runtime fp32", "torch": "PyTorch bf16"}[self.backend]
        return (f"{name} chosen by measurement{' (cached)' if cached else ''} at {PROBE_SIDE} px: PyTorch bf16 "
                f"{self.torch_ms:.0f} ms, ONNX Runtime fp32 {self.onnx_ms:.0f} ms, {self.psnr_db:.1f} dB apart")  # fmt: skip


def cache_path() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "img2img") / CACHE_FILE


def torch_candidate(onnx_path: Path, card: ModelCard, device: str, precision: str) -> Path | None:
    """The G_*.safetensors that PyTorch's bf16 path would run instead of onnx_path, or None when
    there is none to try: a GPU, fp32 asked for, no native bf16, no torch, or no matching weights
    beside the .onnx. Reads file headers only: no torch import."""
    if device != "cpu" or precision == "fp32" or native_bf16() is None or importlib.util.find_spec("torch") is None:
        return None
    path = onnx_path.parent / generator_file(card.direction)
    try:
        meta = read_generator_metadata(path)
    except Exception:  # noqa: BLE001 - missing or unreadable: no candidate
        return None
    same = meta.get("generator") == card.generator and meta.get("direction", "AtoB") == card.direction
    return path if same else None


def probe_image(channels: int, side: int = PROBE_SIDE) -> np.ndarray:
    """A fixed photo-like input (NCHW float32 in [-1, 1]), converted to the model's channels as
    the runtime converts any image: smooth colour gradients, hard-edged shapes and fine texture,
    so every layer sees varied activations."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:side, 0:side] / side
    base = [0.5 + 0.35 * np.sin(2 * np.pi * (fx * x + fy * y) + ph) for fx, fy, ph in rng.uniform(0.3, 2.0, (3, 3))]
    img = np.stack(base)
    img[:, (x - 0.35) ** 2 + (y - 0.4) ** 2 < 0.04] *= 0.4                   # a dark disc
    img[:, (abs(x - 0.7) < 0.15) & (abs(y - 0.7) < 0.12)] = [[0.9], [0.8], [0.3]]  # a light square
    img += rng.normal(0, 0.04, img.shape)                                     # texture
    rgb = Image.fromarray((np.clip(img, 0, 1).transpose(1, 2, 0) * 255).round().astype(np.uint8))
    return to_unit(prepare(rgb, channels))[None]


def measure(onnx_run, torch_run, probe: np.ndarray) -> Verdict:  # noqa: ANN001 - Backend.run callables
    """Both on the probe, interleaved after one warm-up each; the fastest of ROUNDS runs each."""
    from img2img.metrics import psnr  # imports torch, which the PyTorch side has loaded already

    outs = {"onnx": onnx_run(probe), "torch": torch_run(probe)}
    best = {"onnx": float("inf"), "torch": float("inf")}
    for _ in range(ROUNDS):
        for name, run in (("onnx", onnx_run), ("torch", torch_run)):
            time.sleep(PAUSE_S)
            t = time.perf_counter()
            run(probe)
            best[name] = min(best[name], time.perf_counter() - t)
    quality = psnr(from_unit(outs["torch"][0].transpose(1, 2, 0)), from_unit(outs["onnx"][0].transpose(1, 2, 0)))
    faster = best["onnx"] >= MIN_SPEEDUP * best["torch"]
    return Verdict("torch" if faster and quality >= MIN_PSNR else "onnx", 1e3 * best["onnx"], 1e3 * best["torch"], float(quality))


def cache_key(onnx_path: Path, weights: Path, threads: int | None) -> str:
    files = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in (onnx_path, weights)]
    versions = [_version(d) for d in ("onnxruntime", "onnxruntime-gpu", "torch")]
    key = [files, cpu_model(), native_bf16(), threads, os.cpu_count(), versions, __version__]
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cached_verdict(key: str) -> Verdict | None:
    try:
        return Verdict(**json.loads(cache_path().read_text())[key])
    except Exception:  # noqa: BLE001 - no cache, another key, or a damaged file: measure again
        return None


def save_verdict(key: str, verdict: Verdict) -> None:
    """Best effort: an unwritable cache only means measuring again next time."""
    path = cache_path()
    try:
        entries = json.loads(path.read_text())
    except Exception:  # noqa: BLE001 - none yet or damaged: start afresh
        entries = {}
    if not isinstance(entries, dict):
        entries = {}
    entries.pop(key, None)
    entries[key] = asdict(verdict)
    entries = dict(list(entries.items())[-CACHE_ENTRIES:])
    try:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(entries, indent=1)))
    except OSError:
        pass
