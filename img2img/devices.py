"""Which device to compute on, and what the CPU can do: one home for the choice and its errors.

No torch import at module level: the ONNX Runtime path asks about CUDA without loading torch.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache
from pathlib import Path

from img2img import Img2ImgError

DEVICES = ("auto", "cpu", "cuda")


def cuda_usable() -> bool:
    """True when a CUDA GPU can really be used: a cheap probe of the driver (libcuda: cuInit +
    cuDeviceGetCount) first, so that CPU-only machines never import torch for this (it costs
    seconds and about 0.5 GB of RSS), then torch.cuda.is_available() where torch is installed."""
    name = {"linux": "libcuda.so.1", "win32": "nvcuda.dll"}.get(sys.platform)
    if name is None:
        return False
    try:
        driver = ctypes.CDLL(name)
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value < 1:
            return False
    except (OSError, AttributeError):
        return False
    try:
        import torch
    except ImportError:  # an ONNX-Runtime-only install: the driver's answer stands
        return True
    try:
        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001 - a broken CUDA install means "no CUDA"
        return False


def resolve_device(name: str) -> str:
    """'auto' | 'cpu' | 'cuda' -> 'cpu' or 'cuda', or Img2ImgError saying what to pass instead."""
    if name not in DEVICES:
        raise Img2ImgError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name == "auto":
        return "cuda" if cuda_usable() else "cpu"
    if name == "cuda" and not cuda_usable():
        raise Img2ImgError("--device cuda was asked for, but no CUDA GPU is usable here; use --device cpu or auto")
    return name


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def native_bf16(flags: frozenset[str] | None = None) -> str | None:
    """The CPU's native bf16 matrix instructions, or None: 'amx' (Intel AMX tiles, amx_bf16) or
    'avx512_bf16' (AMD Zen 4+ and Intel Cooper Lake+). Without them bf16 is emulated and slower
    than fp32, so it is never chosen."""
    flags = cpu_flags() if flags is None else flags
    if "amx_bf16" in flags and "amx_tile" in flags:
        return "amx"
    if "avx512_bf16" in flags:
        return "avx512_bf16"
    return None


def cpu_bf16_support() -> str | None:
    """Native CPU bf16 as PyTorch can use it: the CPU flags say so and oneDNN is built in."""
    import torch

    return native_bf16() if torch.backends.mkldnn.is_available() else None


def cpu_summary() -> str:
    """'AMD EPYC (2 threads, native bf16: avx512_bf16)' - the line benchmarks and start-up print."""
    import os

    bf16 = native_bf16()
    return f"{cpu_model()} ({os.cpu_count()} cores, native bf16: {bf16 or 'no'})"
