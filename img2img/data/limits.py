"""What a dataset download and its unpacking may cost before they are stopped, and the
human-readable sizes, rates and durations their messages use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from img2img.data.registry import DatasetInfo

CHUNK = 1 << 20  # bytes per read and write
# What a user without the dataset can do instead; every download failure ends with it.
OFFLINE_HINT = (
    "offline, train on your own photos (or this dataset, downloaded and unpacked by hand) with --data DIR, "
    "or try the shipped models in the UI with `img2img serve`"
)


@dataclass(frozen=True)
class Limits:
    """What a download and its unpacking may cost before they are stopped.

    The defaults suit the Berkeley server over an ordinary connection; tests pass smaller ones.
    Each rule, when it fires, ends with a message that names it.
    """

    # Downloading. A stalled or trickling server would otherwise hold a training job for hours.
    stall_s: float = 30.0  # no byte at all for this long (connecting, waiting for headers, or mid-body)
    min_rate: float = 10_000.0  # bytes/s: a slower average over rate_window_s is a trickle...
    rate_window_s: float = 30.0  # ...measured over windows this long, so a short hiccup is tolerated
    # The whole download, retries and their waits included, gets total_floor_s plus the time to
    # fetch the listed size at total_rate: horse2zebra (111 MB) ~47 min, edges2handbags (8.6 GB) ~48 h.
    total_floor_s: float = 600.0
    total_rate: float = 50_000.0  # bytes/s
    # The finished file must be within this factor of the registry's size (None: no check).
    size_factor: float | None = 4.0
    # Unpacking. The archives hold JPEGs, which do not compress further, so a dataset unpacks to
    # about its archive's size; unpack_factor times that is generous yet stops a bomb.
    unpack_factor: float = 4.0
    max_bytes: int = 20 * 1024**3  # absolute cap (edges2handbags unpacks to about 9 GB)
    max_members: int = 500_000  # edges2handbags holds about 140k files
    # A member expanding more than max_ratio:1 is a bomb, once it is past ratio_floor: small files
    # (text, flat masks) may legitimately compress well. Deflate tops out near 1030:1 on zeros.
    max_ratio: float = 200.0
    ratio_floor: int = 1 << 20

    def total_s(self, expected_bytes: int | None) -> float:
        """The time the whole download may take, retries included."""
        return self.total_floor_s + (expected_bytes or 0) / self.total_rate

    def unpack_budget(self, archive_bytes: int) -> tuple[int, str]:
        """(bytes that unpacking may write, why that many) for an archive of archive_bytes (0: unknown)."""
        derived = int(self.unpack_factor * archive_bytes)
        if archive_bytes and derived < self.max_bytes:
            return derived, f"{self.unpack_factor:g} x the {human_size(archive_bytes)} archive"
        return self.max_bytes, "the absolute cap"


DEFAULT_LIMITS = Limits()


def listed_bytes(info: DatasetInfo) -> int | None:
    """The archive size the registry lists for info, in bytes (None: unknown)."""
    return info.size_mb * 1_000_000 or None


def human_size(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} KB" if n >= 1e3 else f"{n:.0f} bytes"


def human_rate(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1e3:.1f} KB/s" if bytes_per_s >= 1e3 else f"{bytes_per_s:.0f} bytes/s"


def human_duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.3g} s"

def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
