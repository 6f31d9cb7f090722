"""Process memory for large images: one allocator setting, made by the entry points that
translate them (`img2img translate`; a server can call it too), never implicitly by a library.

glibc serves blocks below a *dynamic* mmap threshold (raised up to 32 MB each time a mapped block
is freed) from its heaps, one per thread. Tiles (a 1024^2 tile in float32 is 12 MB), Pillow's
16 MB image blocks and the network's buffers then land there, freed memory stays in the process,
and the heaps fragment: peak RSS grew by about 100 MB with every 24 Mpx image of a folder
(533, 646, 730 MB for three; 440 MB each with this setting)."""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)
MMAP_THRESHOLD = 4 << 20  # blocks of 4 MB and more are mapped: freed, they go back to the OS at once


def return_large_blocks() -> bool:
    """Fix glibc's mmap threshold at MMAP_THRESHOLD (a fixed value also stops the dynamic
    raising). Returns whether it was set: False off glibc (other allocators behave otherwise)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    except (OSError, AttributeError):
        return False
