"""Small rules used across the package, each defined once: atomic file writes, the [-1, 1] pixel
scaling, the A|B split of side-by-side pairs, and the channel-count -> image-mode map.

numpy and Pillow only (no torch), so the runtime and the UI can use them without loading torch.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

# Channels of a model's input or output -> Pillow mode, and the word the UI and cards use.
CHANNEL_MODES: dict[int, str] = {1: "L", 3: "RGB"}
CHANNEL_NAMES: dict[int, str] = {1: "grey", 3: "RGB"}
NORMALIZATION = "[-1,1]: x/127.5-1"  # the pixel scaling every model uses, as written in model cards


def channel_name(channels: int) -> str:
    return CHANNEL_NAMES.get(channels, f"{channels}-channel")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path | str, write: Callable[[Path], None], mode: int = 0o666) -> None:
    """write(tmp) into a temp file beside path, fsync, then rename over path.

    os.replace is atomic on POSIX, so a crash (even SIGKILL) mid-write leaves either the old
    file or the new one, never a torn one. mkstemp creates 0600 files; the result gets
    `mode & ~umask` like any file the user creates (0644 under the usual umask 022), set after
    write() because some writers (safetensors) replace the file they are given."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, mode & ~_umask())
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def to_unit(u8: np.ndarray) -> np.ndarray:
    """HxW or HxWxC uint8 -> CxHxW float32 in [-1, 1]: x / 127.5 - 1."""
    if u8.ndim == 2:
        u8 = u8[:, :, None]
    x = np.ascontiguousarray(u8.transpose(2, 0, 1), dtype=np.float32)
    x /= np.float32(127.5)
    x -= np.float32(1.0)
    return x


def from_unit(x: np.ndarray) -> np.ndarray:
    """CxHxW float in [-1, 1] -> HxWxC uint8: round((x + 1) * 127.5), clipped (inverse of to_unit)."""
    return np.clip((x.transpose(1, 2, 0) + 1.0) * 127.5 + 0.5, 0, 255).astype(np.uint8)


def split_ab(ab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A side-by-side pair (pix2pix's layout: A left, B right) -> (A, B), equal halves; an odd
    last column is dropped."""
    half = ab.shape[1] // 2
    return ab[:, :half], ab[:, half : 2 * half]
