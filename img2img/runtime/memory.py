"""Process memory for large images: allocator settings made by the entry points that translate
them (`img2img translate`; a server can call them too), never implicitly by a library. Only
release_free_memory, which changes no setting and just returns free pages, is called by
batch.translate_files between images.

glibc serves blocks below a *dynamic* mmap threshold (raised up to 32 MB each time a mapped block
is freed) from its heaps, one per thread, and maps larger ones. Neither suits large images, and
what does depends on who allocates the network's buffers:

- ONNX Runtime (its arena is off for large images): blocks of 4 MB and more are mapped, so freed
  ones go back to the OS at once. Otherwise tiles (a 1024^2 tile in float32 is 12 MB), Pillow's
  16 MB image blocks and the network's buffers land in the heaps, which fragment: peak RSS grew
  by about 100 MB with every 24 Mpx image of a folder (533, 646, 730 MB for three; 440 MB each
  with this setting).
- PyTorch on a CPU keeps no cache: every tile allocates its activations afresh, and a mapped
  block is faulted in (zeroed page by page) anew each time. Blocks up to 64 MB (a 1024^2 tile's
  activations of up to 16 channels in float32) therefore stay in the heap, where the next tile
  reuses them, and release_free_memory() hands the heap's free pages back between images (three
  6000x4000 photos: 1.79 GB peak; one: 1.48 GB). Measured in bf16 with 1024 px tiles: a ResNet
  at ngf 16 took 22 s for a 3000x2000 photo with a 4 MB threshold, 11 s with 64 MB, 8 s with
  1 GB; at ngf 64 a 2048x2048 photo took 93, 79 and 68 s, at 2.3, 2.6 and 5.5 GB peak: a larger
  threshold buys little more speed for much more memory."""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = {"onnx": 4 << 20, "torch": 64 << 20}  # by backend: see above


def _libc() -> ctypes.CDLL | None:
    """glibc, or None elsewhere (other allocators behave otherwise)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def tune_for_large_images(backend: str) -> bool:
    """Fix glibc's mmap threshold for the backend that runs the network (a fixed value also stops
    the dynamic raising); for torch, the trim threshold too, so free memory goes back only when
    release_free_memory() says so. Returns whether it was set: False off glibc."""
    threshold = MMAP_THRESHOLD[backend]
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, threshold) == 1
    if backend == "torch":
        ok = libc.mallopt(M_TRIM_THRESHOLD, threshold) == 1 and ok
    return ok


def release_free_memory() -> None:
    """Return the heaps' free pages to the OS (glibc malloc_trim): between large images, so that
    memory freed by one image does not stay in the process. Harmless anywhere; a no-op off glibc."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
