"""Download, verify and unpack a registered dataset into the folder layout training reads.

Why each step is there:
- The archive streams into ``<archive>.part`` and is renamed only when complete, so a dropped
  connection leaves a partial file that the next run resumes with an HTTP Range request.
- A download that stalls (no byte for ``Limits.stall_s``), trickles (under ``Limits.min_rate``
  over ``Limits.rate_window_s``) or runs past a total time derived from its size is stopped with a
  message naming the rule, instead of hanging a training job for hours.
- A finished download is checked to be an archive of the expected kind and of plausible size
  before its checksum is recorded: an HTML error page served as the archive is deleted, not kept.
- Its SHA-256 is recorded in ``<archive>.sha256`` on first download (or checked against the
  registry's pinned value) and checked whenever the archive is unpacked again, so a damaged or
  replaced file is caught instead of silently training on it.
- Every member is validated before anything is written (no absolute paths, no ``..``, no links or
  special files, bounded size, count and compression ratio); files are then written one by one
  into a temporary folder inside the cache root, counting the bytes really written against a
  budget derived from the dataset's listed size, and renamed into place. Nothing can land outside
  the root, and a refused archive leaves no folder behind.
- The dataset folder gets a completion marker last, so a half-finished folder is redone.
- A file lock serializes processes (e.g. torchrun ranks) that ask for the same dataset.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import socket
import ssl
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, build_opener

from tqdm import tqdm

from img2img import Img2ImgError, __version__
from img2img.io import atomic_write
from img2img.data.images import IMAGE_EXTENSIONS
from img2img.data.registry import (
    BASE_URL_ENV,
    COMPLETE_MARKER,
    DATA_ROOT_ENV,
    DatasetInfo,
    data_root,
    dataset_dir,
    dataset_url,
    get_dataset,
    is_downloaded,
)

try:  # POSIX only; elsewhere concurrent processes are not serialized.
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

CHUNK = 1 << 20
# Folder names that are already the dataset layout, so a single one of them is not a wrapper.
LAYOUT_DIRS = {"trainA", "trainB", "testA", "testB", "train", "val", "test"}
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
            return derived, f"{self.unpack_factor:g} x the {_human(archive_bytes)} archive"
        return self.max_bytes, "the absolute cap"


DEFAULT_LIMITS = Limits()


def listed_bytes(info: DatasetInfo) -> int | None:
    """The archive size the registry lists for info, in bytes (None: unknown)."""
    return info.size_mb * 1_000_000 or None


def ensure_dataset(
    name: str,
    root: Path | str | None = None,
    log: logging.Logger | None = None,
    base_url: str | None = None,
    progress: bool = True,
    *,
    env: Mapping[str, str] = os.environ,
    retries: int = 3,
    limits: Limits = DEFAULT_LIMITS,
) -> Path:
    """The dataset's folder in the layout training reads, downloaded and unpacked when missing.

    CycleGAN sets give a folder holding trainA/ trainB/ testA/ testB/; pix2pix sets give
    train/AB/ and val/AB/ (and test/AB/ where the archive has it). root defaults to
    $IMG2IMG_DATA or ~/.cache/img2img/datasets; base_url to $IMG2IMG_DATASETS_URL or the
    Berkeley server. limits bounds the download's time and the unpacking's size.
    """
    info = get_dataset(name)
    if not info.downloadable:
        raise Img2ImgError(f"dataset '{name}' cannot be downloaded: {info.note}")
    log = log or logger
    root = data_root(root, env)
    folder = dataset_dir(info, root)
    if is_downloaded(info, root):
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Img2ImgError(f"cannot create the dataset cache {root} ({e}); set {DATA_ROOT_ENV} to a writable folder") from None

    with _locked(root / f".{info.name}.lock", log):
        if is_downloaded(info, root):  # another process finished it while we waited
            return folder
        archive = root / info.archive_name
        if archive.is_file():
            log.info("using the cached archive %s", archive)
        else:
            url = dataset_url(info, base_url, env)
            log.info("downloading %s (~%d MB) from %s", info.name, info.size_mb, url)
            download(url, archive, log, progress=progress, retries=retries, limits=limits, expected_bytes=listed_bytes(info))
        digest = verify_archive(info, archive, log, limits)
        if folder.exists():
            log.warning("%s is incomplete (no %s); unpacking it again", folder, COMPLETE_MARKER)
            shutil.rmtree(folder)
        log.info("unpacking %s", archive)
        unpack_dataset(info, archive, folder, digest, limits)
    log.info("dataset %s is ready in %s", info.name, folder)
    return folder


# ---------------------------------------------------------------- download


@dataclass(frozen=True)
class _Deadline:
    """When the whole download must be over (time.monotonic()), and the message when it is not."""

    at: float
    message: str

    @classmethod
    def after(cls, seconds: float, expected_bytes: int | None) -> _Deadline:
        size = f" for a ~{_human(expected_bytes)} archive" if expected_bytes else ""
        return cls(time.monotonic() + seconds, f"the download took longer than its time limit of {_duration(seconds)}{size}")

    def left(self) -> float:
        return self.at - time.monotonic()


class _Stopped(Exception):
    """A Limits rule ended the download: rule is 'stalled', 'slow' or 'total'; reason says why."""

    def __init__(self, rule: str, reason: str) -> None:
        super().__init__(reason)
        self.rule, self.reason = rule, reason


def download(
    url: str,
    dest: Path,
    log: logging.Logger,
    progress: bool = True,
    retries: int = 3,
    limits: Limits = DEFAULT_LIMITS,
    expected_bytes: int | None = None,
) -> None:
    """Stream url into dest through dest.part, resuming a partial file; retry transient failures.

    An attempt that made progress is resumed at once; one that made none waits 1, 2, 4... s first.
    All attempts share one deadline (Limits.total_s), so retries cannot multiply the waiting. A
    stall is retried only after progress (a connection that died mid-way); a server that never
    answers, or trickles, is not asked again: the message says to try later. A host that does
    not resolve is not retried either: there is no network, or no DNS, and a second try won't fix it.
    """
    part = dest.with_name(dest.name + ".part")
    deadline = _Deadline.after(limits.total_s(expected_bytes), expected_bytes)
    for attempt in range(retries + 1):
        before = _size(part)
        try:
            _fetch(url, part, progress, limits, deadline)
            break
        except _Stopped as e:
            if e.rule != "stalled" or _size(part) <= before or attempt == retries:
                raise _network_error(url, part, e.reason) from None
            reason = e.reason
        except HTTPError as e:
            reason = f"HTTP {e.code} {e.reason}"
            if attempt == retries or not (e.code >= 500 or e.code in (408, 429)):
                raise _network_error(url, part, reason) from None
        except URLError as e:
            if isinstance(e.reason, socket.gaierror):
                host = urlsplit(url).hostname
                why = e.reason.strerror or str(e.reason)
                raise _network_error(url, part, f"cannot resolve the host name {host} ({why}): no network, or no DNS") from None
            reason = str(e.reason or e) or type(e).__name__
            if attempt == retries:
                raise _network_error(url, part, reason) from None
        except (HTTPException, ConnectionError, ssl.SSLError) as e:
            reason = str(e) or type(e).__name__
            if attempt == retries:
                raise _network_error(url, part, reason) from None
        # Only an attempt that received bytes was interrupted; one that got none simply failed.
        gained = _size(part) - before
        if gained > 0:
            log.warning("download of %s interrupted after %s (%s); resuming (retry %d of %d)",
                        url, _human(gained), reason, attempt + 1, retries)
            continue
        wait = min(2**attempt, 30)
        if wait >= deadline.left():  # no time left to try again: report the failure itself
            raise _network_error(url, part, reason) from None
        log.warning("download of %s failed (%s); retrying in %d s (%d of %d)", url, reason, wait, attempt + 1, retries)
        time.sleep(wait)
    os.replace(part, dest)


class _Incomplete(ConnectionError):
    """The server closed the connection before sending the whole body."""


def _timed_out(e: BaseException) -> bool:
    """A socket timeout, raw or wrapped by urllib (a timeout while connecting)."""
    return isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError)


def _fetch(url: str, part: Path, progress: bool, limits: Limits, deadline: _Deadline) -> None:
    """One request: append to part from its current size (Range), or start over on a 200.

    Raises _Stopped when a Limits rule fires. The socket timeout is the stall limit (or what is
    left before the deadline, when less): no read, connect included, waits longer for a byte.
    """
    have = _size(part)
    left = deadline.left()
    if left <= 0:
        raise _Stopped("total", deadline.message)
    request = Request(url, headers={"User-Agent": f"img2img/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        try:
            response = build_opener().open(request, timeout=min(limits.stall_s, left))  # honours *_proxy
        except HTTPError as e:
            if e.code != 416 or not have:
                raise
            # Range not satisfiable: the part is already whole (a crash before the rename), or bogus.
            total = _content_range(e.headers.get("Content-Range", ""))[1]
            e.close()
            if total == have:
                return
            part.unlink()
            return _fetch(url, part, progress, limits, deadline)
        with response:
            _receive(response, part, have, progress, limits, deadline)
    except (TimeoutError, URLError) as e:
        if not _timed_out(e):
            raise
        if left < limits.stall_s or deadline.left() <= 0:  # the timeout was what was left of the total
            raise _Stopped("total", deadline.message) from None
        raise _Stopped("stalled", f"no data arrived for {_duration(limits.stall_s)} (the server stalled)") from None


def _receive(response, part: Path, have: int, progress: bool, limits: Limits, deadline: _Deadline) -> None:
    """Write the response body into part, checking the rate and the deadline after every read."""
    if have and response.status == 206:
        start, _ = _content_range(response.headers.get("Content-Range", ""))
        if start != have:
            part.unlink()
            raise _Incomplete(f"server resumed at byte {start} instead of {have}; starting over")
        mode = "ab"
    else:  # 200: the server ignored the range, or there was nothing to resume
        have, mode = 0, "wb"
    length = response.headers.get("Content-Length")
    total = have + int(length) if length is not None else None
    window_start, window_bytes = time.monotonic(), 0
    with open(part, mode) as out, tqdm(
        total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
        desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
    ) as bar:
        # read1 returns after one read from the socket, so a trickle reaches the checks below
        # instead of blocking inside read() until a whole chunk has dribbled in.
        while chunk := response.read1(CHUNK):
            out.write(chunk)
            bar.update(len(chunk))
            now = time.monotonic()
            if now >= deadline.at:
                raise _Stopped("total", deadline.message)
            window_bytes += len(chunk)
            if now - window_start >= limits.rate_window_s:  # tumbling windows: simple, and enough
                rate = window_bytes / (now - window_start)
                if rate < limits.min_rate:
                    raise _Stopped("slow", f"the server sent {_rate(rate)} over the last {_duration(now - window_start)}, "
                                           f"under the minimum of {_rate(limits.min_rate)}")
                window_start, window_bytes = now, 0
    if total is not None and _size(part) != total:
        raise _Incomplete(f"connection closed after {_size(part)} of {total} bytes")


def _content_range(value: str) -> tuple[int | None, int | None]:
    """(start, total) from 'bytes START-END/TOTAL' or 'bytes */TOTAL'; None where absent."""
    try:
        spec, _, total = value.split(" ", 1)[1].partition("/")
        start = None if spec == "*" else int(spec.split("-")[0])
        return start, (None if total in ("", "*") else int(total))
    except (IndexError, ValueError):
        return None, None


def _network_error(url: str, part: Path, reason: str) -> Img2ImgError:
    resume = ""
    if _size(part):
        resume = f" ({part} holds {_human(_size(part))} and resumes where it stopped)"
    return Img2ImgError(
        f"cannot download {url}: {reason}. Run the same command again later to retry{resume}; "
        f"or set {BASE_URL_ENV} to a mirror with the same paths "
        f"(e.g. {BASE_URL_ENV}=https://mirror.example.org); {OFFLINE_HINT}"
    )


def _human(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    return f"{n / 1e3:.1f} KB" if n >= 1e3 else f"{n:.0f} bytes"


def _rate(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1e3:.1f} KB/s" if bytes_per_s >= 1e3 else f"{bytes_per_s:.0f} bytes/s"


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.3g} s"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


# ---------------------------------------------------------------- checking the download


def _not_an_archive(archive: Path, kind: str) -> str | None:
    """None when archive opens as a `kind` archive ("zip" or "tar.gz"); else what it is, in words.

    A quick check (the zip's directory, the tarball's first header), not a full read: it catches
    error pages, captive portals and truncated zips before a checksum is recorded for them.
    """
    with open(archive, "rb") as f:
        head = f.read(1024)
    magic = b"PK" if kind == "zip" else b"\x1f\x8b"
    if head.startswith(magic):
        try:
            if kind == "zip":
                with zipfile.ZipFile(archive) as zf:  # reads the central directory at the end
                    zf.infolist()
            else:
                with tarfile.open(archive, "r:gz") as tf:
                    if tf.next() is None:
                        return f"an empty {kind} archive"
            return None
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as e:
            return f"a corrupt or truncated {kind} archive ({e or type(e).__name__})"
    text = head.lstrip().lower()
    if any(tag in text for tag in (b"<!doctype html", b"<html", b"<head", b"<body")):
        return "an HTML page"
    if not head:
        return "an empty file"
    other = "a tar.gz" if head.startswith(b"\x1f\x8b") else "a zip" if head.startswith(b"PK") else "a"
    return f"{other} file that is not a {kind} archive"


def check_download(info: DatasetInfo, archive: Path, limits: Limits = DEFAULT_LIMITS) -> None:
    """Delete archive and raise unless it opens as the dataset's kind of archive, at a plausible size.

    Run before a checksum is recorded: otherwise an error page would be kept and trusted for good.
    """
    size, listed, factor = _size(archive), listed_bytes(info), limits.size_factor
    expected = f"the ~{_human(listed)} {info.archive} archive" if listed else f"a {info.archive} archive"
    problem = _not_an_archive(archive, info.archive)
    if problem is not None:
        what = f"{problem} of {_human(size)} instead of {expected} (a server error page, a captive portal?)"
    elif factor and listed and not listed / factor <= size <= listed * factor:
        what = (f"a {info.archive} archive of {_human(size)}, more than {factor:g} x "
                f"{'smaller' if size < listed else 'larger'} than the ~{_human(listed)} listed")
    else:
        return
    archive.unlink(missing_ok=True)
    raise Img2ImgError(
        f"the download of {info.name} is {what}; it was deleted ({archive}). "
        f"Run the same command again later to download it afresh; or set {BASE_URL_ENV} to a mirror with the same "
        f"paths; {OFFLINE_HINT}"
    )


# ---------------------------------------------------------------- checksum


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def checksum_file(archive: Path) -> Path:
    """Where the archive's SHA-256 is recorded (sha256sum format)."""
    return archive.with_name(archive.name + ".sha256")


def verify_archive(info: DatasetInfo, archive: Path, log: logging.Logger, limits: Limits = DEFAULT_LIMITS) -> str:
    """The archive's SHA-256, checked against the pinned or recorded one; recorded when new.

    A new archive (nothing recorded yet) is first checked to be a plausible archive, and deleted
    when it is not (check_download), so a bad download is never recorded and reused.
    """
    record = checksum_file(archive)
    if not record.is_file():
        check_download(info, archive, limits)
    digest = sha256_file(archive)
    expected = info.sha256
    if expected is None and record.is_file():
        expected = (record.read_text().split() or [""])[0]
    if expected is not None and digest != expected:
        raise Img2ImgError(
            f"{archive} does not match its checksum (sha256 {digest}, expected {expected}): the file is damaged "
            f"or was replaced. Delete {archive} and {record} and run again to download it afresh"
        )
    if not record.is_file():
        atomic_write(record, lambda tmp: tmp.write_text(f"{digest}  {archive.name}\n"))
        log.info("recorded sha256 %s in %s", digest, record)
    return digest


# ---------------------------------------------------------------- safe extraction


class _Member:
    """One validated archive entry: where it goes (relative), its size, and how to read it.

    packed is the compressed size for zip members, None for tar members (a tar.gz is one stream).
    """

    __slots__ = ("path", "is_dir", "size", "packed", "source")

    def __init__(
        self, path: PurePosixPath, is_dir: bool, size: int, packed: int | None, source: zipfile.ZipInfo | tarfile.TarInfo
    ):
        self.path, self.is_dir, self.size, self.packed, self.source = path, is_dir, size, packed, source


def _refused(archive: Path, what: str) -> Img2ImgError:
    return Img2ImgError(
        f"refusing to unpack {archive}: {what}. Nothing was extracted; the archive is unsafe or not the expected "
        f"one. Delete {archive} and {checksum_file(archive)}, and check the download source ({BASE_URL_ENV})"
    )


def _unsafe(archive: Path, name: str, why: str) -> Img2ImgError:
    return _refused(archive, f"member '{name}' {why}")


def _safe_path(archive: Path, name: str) -> PurePosixPath | None:
    """The member's relative path, or None for entries to skip (the root, __MACOSX resource forks)."""
    posix = name.replace("\\", "/")
    windows = PureWindowsPath(name)
    if posix.startswith("/") or windows.drive or windows.root:
        raise _unsafe(archive, name, "has an absolute path")
    parts = [p for p in posix.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _unsafe(archive, name, "has a '..' component")
    if not parts or parts[0] == "__MACOSX":
        return None
    return PurePosixPath(*parts)


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> list[_Member]:
    members = []
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)  # unix mode bits; 0 when made elsewhere
        if kind == stat.S_IFLNK:
            raise _unsafe(archive, info.filename, "is a symbolic link")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _unsafe(archive, info.filename, "is a special file")
        path = _safe_path(archive, info.filename)
        if path is not None:
            is_dir = info.is_dir() or kind == stat.S_IFDIR
            members.append(_Member(path, is_dir, info.file_size, info.compress_size, info))
    return members


def _tar_members(tf: tarfile.TarFile, archive: Path, max_members: int) -> list[_Member]:
    members = []
    for count, info in enumerate(tf, 1):  # iterating reads the whole stream once
        if count > max_members:
            raise _unsafe(archive, info.name, f"is past the limit of {max_members} members")
        if info.issym() or info.islnk():
            raise _unsafe(archive, info.name, f"is a {'symbolic' if info.issym() else 'hard'} link to '{info.linkname}'")
        if not (info.isfile() or info.isdir()):
            raise _unsafe(archive, info.name, "is a special file")
        path = _safe_path(archive, info.name)
        if path is not None:
            members.append(_Member(path, info.isdir(), info.size if info.isfile() else 0, None, info))
    return members


def _check_totals(archive: Path, members: list[_Member], limits: Limits, budget: int, basis: str) -> None:
    """Refuse, before anything is written, what the headers already show to be too much."""
    if len(members) > limits.max_members:
        raise _unsafe(archive, members[limits.max_members].path.as_posix(), f"is past the limit of {limits.max_members} members")
    ratio_rule = f"over the {limits.max_ratio:g}:1 limit for anything above {_human(limits.ratio_floor)}: a zip bomb"
    for m in members:  # zip members carry their compressed size: check each one
        if m.packed is not None and m.size > limits.ratio_floor and m.size > limits.max_ratio * max(m.packed, 1):
            ratio = m.size / max(m.packed, 1)
            raise _unsafe(archive, m.path.as_posix(), f"would expand {_human(m.packed)} into {_human(m.size)} "
                                                      f"({ratio:.0f}:1), {ratio_rule}")
    total = sum(m.size for m in members)
    packed = _size(archive)
    is_tar = not archive.name.endswith(".zip")
    if is_tar and total > limits.ratio_floor and total > limits.max_ratio * max(packed, 1):
        # A tar.gz is one compressed stream, so only the whole archive's ratio is known up front.
        raise _refused(archive, f"it would expand {_human(packed)} into {_human(total)} ({total / max(packed, 1):.0f}:1), {ratio_rule}")
    if total > budget:
        raise _refused(archive, f"it would unpack to {_human(total)}, over the {_human(budget)} limit ({basis})")


def _write_members(archive: Path, members: list[_Member], dest: Path, open_member, budget: int, basis: str) -> None:
    """Create dirs and copy files, counting the bytes really written against the budget: the
    headers' sizes were checked already, but the count does not rely on them."""
    written = 0
    for m in members:
        target = dest.joinpath(*m.path.parts)
        if m.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_member(m.source) as src, open(target, "wb") as out:
            while chunk := src.read(CHUNK):
                written += len(chunk)
                if written > budget:
                    raise Img2ImgError(
                        f"stopped unpacking {archive} at member '{m.path}': it wrote more than the {_human(budget)} limit "
                        f"({basis}), more than the archive's headers declare; what was written is removed. Delete "
                        f"{archive} and {checksum_file(archive)}, and check the download source ({BASE_URL_ENV})"
                    )
                out.write(chunk)


def safe_extract(archive: Path, dest: Path, limits: Limits = DEFAULT_LIMITS, listed: int | None = None) -> None:
    """Unpack a .zip or .tar.gz into the existing folder dest after validating every member.

    At most limits.unpack_budget(the larger of listed and the archive's size) bytes are written.
    Raises Img2ImgError for an unsafe member or too much data (nothing written when the headers
    show it; when the count while writing does, dest holds a partial result that the caller
    removes, as unpack_dataset does) or for a corrupt archive.
    """
    budget, basis = limits.unpack_budget(max(listed or 0, _size(archive)))
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                members = _zip_members(zf, archive)
                _check_totals(archive, members, limits, budget, basis)
                _write_members(archive, members, dest, zf.open, budget, basis)
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = _tar_members(tf, archive, limits.max_members)
                _check_totals(archive, members, limits, budget, basis)
                _write_members(archive, members, dest, tf.extractfile, budget, basis)
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, NotImplementedError) as e:
        record = checksum_file(archive)
        raise Img2ImgError(
            f"archive {archive} is corrupt or unreadable ({e or type(e).__name__}). "
            f"Delete {archive} and {record} and run again to download it afresh"
        ) from None
    except OSError as e:
        raise Img2ImgError(f"cannot unpack {archive} into {dest}: {e}") from None


# ---------------------------------------------------------------- layout


def unpack_dataset(info: DatasetInfo, archive: Path, folder: Path, digest: str, limits: Limits = DEFAULT_LIMITS) -> None:
    """Unpack archive into a temporary folder next to folder, normalize the layout, check it,
    write the completion marker and rename the result to folder (which must not exist).
    Whatever fails, the temporary folder is removed: a refused archive leaves nothing behind."""
    root = folder.parent
    for stale in root.glob(f".{info.name}.*.unpacking"):  # left by a killed run (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{info.name}.", suffix=".unpacking", dir=root))
    try:
        safe_extract(archive, tmp, limits, listed_bytes(info))
        content = _content_root(tmp)
        if info.method == "pix2pix":
            _normalize_paired(content)
        _check_layout(info, archive, content)
        marker = {"name": info.name, "archive": archive.name, "sha256": digest}
        (content / COMPLETE_MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        os.replace(content, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX")


def _content_root(tmp: Path) -> Path:
    """The archive's single top folder (horse2zebra/, facades/), or tmp when there is none."""
    entries = _visible(tmp)
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name not in LAYOUT_DIRS:
        return entries[0]
    return tmp


def _normalize_paired(content: Path) -> None:
    """pix2pix tarballs put A|B images straight in train/, val/, test/: move them into <split>/AB/."""
    for split in _visible(content):
        if not split.is_dir() or (split / "AB").is_dir() or ((split / "A").is_dir() and (split / "B").is_dir()):
            continue
        images = [p for p in split.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
        if images:
            (split / "AB").mkdir()
            for p in images:
                p.rename(split / "AB" / p.name)


def _check_layout(info: DatasetInfo, archive: Path, content: Path) -> None:
    for sub in info.required:
        folder = content / sub
        if not (folder.is_dir() and any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir())):
            found = ", ".join(p.name for p in _visible(content)) or "nothing"
            raise Img2ImgError(
                f"{archive} does not hold the expected layout ({info.layout}): {sub}/ is missing or has no images "
                f"(found: {found}). Delete {archive} and {checksum_file(archive)}, and check the download source ({BASE_URL_ENV})"
            )


@contextmanager
def _locked(path: Path, log: logging.Logger) -> Iterator[None]:
    """Hold an exclusive lock on path, so one process downloads while the others wait."""
    with open(path, "a") as f:
        if fcntl is not None:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("another process is preparing this dataset; waiting for it (lock %s)", path)
                fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(f, fcntl.LOCK_UN)
