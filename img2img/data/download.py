"""Download, verify and unpack a registered dataset into the folder layout training reads.

Why each step is there:
- The archive streams into ``<archive>.part`` and is renamed only when complete, so a dropped
  connection leaves a partial file that the next run resumes with an HTTP Range request.
- A download that stalls (no byte for ``Limits.stall_s``), trickles (under ``Limits.min_rate``
  over ``Limits.rate_window_s``) or runs past a total time derived from its size is stopped with a
  message naming the rule, instead of hanging a training job for hours.
- The finished archive is checked, checksummed and unpacked safely by img2img.data.archive.
- The dataset folder gets a completion marker last, so a half-finished folder is redone.
- A file lock serializes processes (e.g. torchrun ranks) that ask for the same dataset.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import ssl
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, build_opener

from tqdm import tqdm

from img2img import Img2ImgError, __version__
from img2img.data.archive import unpack_dataset, verify_archive
from img2img.data.limits import OFFLINE_HINT, file_size, CHUNK, DEFAULT_LIMITS, Limits, human_duration, human_rate, human_size, listed_bytes
from img2img.data.registry import (
    BASE_URL_ENV,
    COMPLETE_MARKER,
    DATA_ROOT_ENV,
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
        size = f" for a ~{human_size(expected_bytes)} archive" if expected_bytes else ""
        return cls(time.monotonic() + seconds, f"the download took longer than its time limit of {human_duration(seconds)}{size}")

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
        before = file_size(part)
        try:
            _fetch(url, part, progress, limits, deadline)
            break
        except _Stopped as e:
            if e.rule != "stalled" or file_size(part) <= before or attempt == retries:
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
        gained = file_size(part) - before
        if gained > 0:
            log.warning("download of %s interrupted after %s (%s); resuming (retry %d of %d)",
                        url, human_size(gained), reason, attempt + 1, retries)
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
    have = file_size(part)
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
        raise _Stopped("stalled", f"no data arrived for {human_duration(limits.stall_s)}: the server stalled") from None


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
                    raise _Stopped("slow", f"the server sent {human_rate(rate)} over the last {human_duration(now - window_start)}, "
                                           f"under the minimum of {human_rate(limits.min_rate)}")
                window_start, window_bytes = now, 0
    if total is not None and file_size(part) != total:
        raise _Incomplete(f"connection closed after {file_size(part)} of {total} bytes")


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
    if file_size(part):
        resume = f" ({part} holds {human_size(file_size(part))} and resumes where it stopped)"
    return Img2ImgError(
        f"cannot download {url}: {reason}. Run the same command again later to retry{resume}; "
        f"or set {BASE_URL_ENV} to a mirror with the same paths "
        f"(e.g. {BASE_URL_ENV}=https://mirror.example.org); {OFFLINE_HINT}"
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
