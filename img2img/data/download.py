"""Download, verify and unpack a registered dataset into the folder layout training reads.

Why each step is there:
- The archive streams into ``<archive>.part`` and is renamed only when complete, so a dropped
  connection leaves a partial file that the next run resumes with an HTTP Range request.
- Its SHA-256 is recorded in ``<archive>.sha256`` on first download (or checked against the
  registry's pinned value) and checked whenever the archive is unpacked again, so a damaged or
  replaced file is caught instead of silently training on it.
- Every member is validated before anything is written (no absolute paths, no ``..``, no links or
  special files, bounded size and count); files are then written one by one into a temporary
  folder inside the cache root and renamed into place. Nothing can land outside the root.
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
import ssl
import stat
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path, PurePosixPath, PureWindowsPath
from urllib.error import HTTPError, URLError
from urllib.request import Request, build_opener

from tqdm import tqdm

from img2img import Img2ImgError, __version__
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

DEFAULT_MAX_BYTES = 20 * 1024**3  # the largest set (edges2handbags) unpacks to about 9 GB
DEFAULT_MAX_MEMBERS = 500_000  # edges2handbags holds about 140k files
CHUNK = 1 << 20
# Folder names that are already the dataset layout, so a single one of them is not a wrapper.
LAYOUT_DIRS = {"trainA", "trainB", "testA", "testB", "train", "val", "test"}


def ensure_dataset(
    name: str,
    root: Path | str | None = None,
    log: logging.Logger | None = None,
    base_url: str | None = None,
    progress: bool = True,
    *,
    env: Mapping[str, str] = os.environ,
    retries: int = 3,
    timeout: float = 60.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Path:
    """The dataset's folder in the layout training reads, downloaded and unpacked when missing.

    CycleGAN sets give a folder holding trainA/ trainB/ testA/ testB/; pix2pix sets give
    train/AB/ and val/AB/ (and test/AB/ where the archive has it). root defaults to
    $IMG2IMG_DATA or ~/.cache/img2img/datasets; base_url to $IMG2IMG_DATASETS_URL or the
    Berkeley server.
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
            download(url, archive, log, progress=progress, retries=retries, timeout=timeout)
        digest = verify_archive(info, archive, log)
        if folder.exists():
            log.warning("%s is incomplete (no %s); unpacking it again", folder, COMPLETE_MARKER)
            shutil.rmtree(folder)
        log.info("unpacking %s", archive)
        unpack_dataset(info, archive, folder, digest, max_bytes=max_bytes, max_members=max_members)
    log.info("dataset %s is ready in %s", info.name, folder)
    return folder


# ---------------------------------------------------------------- download


def download(
    url: str, dest: Path, log: logging.Logger, progress: bool = True, retries: int = 3, timeout: float = 60.0
) -> None:
    """Stream url into dest through dest.part, resuming a partial file; retry transient failures.

    An attempt that made progress is resumed at once; one that made none waits 1, 2, 4... s first.
    """
    part = dest.with_name(dest.name + ".part")
    for attempt in range(retries + 1):
        before = _size(part)
        try:
            _fetch(url, part, progress, timeout)
            break
        except HTTPError as e:
            reason = f"HTTP {e.code} {e.reason}"
            if attempt == retries or not (e.code >= 500 or e.code in (408, 429)):
                raise _network_error(url, part, reason) from None
        except (URLError, HTTPException, ConnectionError, TimeoutError, ssl.SSLError) as e:
            reason = str(getattr(e, "reason", None) or e) or type(e).__name__
            if attempt == retries:
                raise _network_error(url, part, reason) from None
        log.warning("download of %s interrupted (%s); retrying (%d of %d)", url, reason, attempt + 1, retries)
        if _size(part) <= before:
            time.sleep(min(2**attempt, 30))
    os.replace(part, dest)


class _Incomplete(ConnectionError):
    """The server closed the connection before sending the whole body."""


def _fetch(url: str, part: Path, progress: bool, timeout: float) -> None:
    """One request: append to part from its current size (Range), or start over on a 200."""
    have = _size(part)
    request = Request(url, headers={"User-Agent": f"img2img/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = build_opener().open(request, timeout=timeout)  # build_opener honours *_proxy now
    except HTTPError as e:
        if e.code != 416 or not have:
            raise
        # Range not satisfiable: the part is already whole (a crash before the rename), or bogus.
        total = _content_range(e.headers.get("Content-Range", ""))[1]
        e.close()
        if total == have:
            return
        part.unlink()
        return _fetch(url, part, progress, timeout)

    with response:
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
        with open(part, mode) as out, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress, leave=False,
        ) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
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
        f"cannot download {url}: {reason}. Run the same command again to retry{resume}; "
        f"or set {BASE_URL_ENV} to a mirror with the same paths "
        f"(e.g. {BASE_URL_ENV}=https://mirror.example.org); "
        "or download and unpack the data yourself and pass --data DIR"
    )


def _human(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


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


def verify_archive(info: DatasetInfo, archive: Path, log: logging.Logger) -> str:
    """The archive's SHA-256, checked against the pinned or recorded one; recorded when new."""
    record = checksum_file(archive)
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
        record.write_text(f"{digest}  {archive.name}\n")
        log.info("recorded sha256 %s in %s", digest, record)
    return digest


# ---------------------------------------------------------------- safe extraction


class _Member:
    """One validated archive entry: where it goes (relative), and how to read it."""

    __slots__ = ("path", "is_dir", "size", "source")

    def __init__(self, path: PurePosixPath, is_dir: bool, size: int, source: zipfile.ZipInfo | tarfile.TarInfo):
        self.path, self.is_dir, self.size, self.source = path, is_dir, size, source


def _unsafe(archive: Path, name: str, why: str) -> Img2ImgError:
    return Img2ImgError(
        f"refusing to unpack {archive}: member '{name}' {why}. Nothing was extracted; the archive is unsafe "
        f"or not the expected one. Delete {archive} and {checksum_file(archive)}, and check the download "
        f"source ({BASE_URL_ENV})"
    )


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
            members.append(_Member(path, info.is_dir() or kind == stat.S_IFDIR, info.file_size, info))
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
            members.append(_Member(path, info.isdir(), info.size if info.isfile() else 0, info))
    return members


def _check_totals(archive: Path, members: list[_Member], max_bytes: int, max_members: int) -> None:
    if len(members) > max_members:
        raise _unsafe(archive, members[max_members].path.as_posix(), f"is past the limit of {max_members} members")
    total = sum(m.size for m in members)
    if total > max_bytes:
        raise Img2ImgError(
            f"refusing to unpack {archive}: it would unpack to {_human(total)}, over the {_human(max_bytes)} limit. "
            f"Nothing was extracted. Delete {archive} and {checksum_file(archive)}, and check the download source "
            f"({BASE_URL_ENV})"
        )


def _write_members(archive: Path, members: list[_Member], dest: Path, open_member, budget: int) -> None:
    """Create dirs and copy files; the byte budget also catches sizes that lied in the headers."""
    for m in members:
        target = dest.joinpath(*m.path.parts)
        if m.is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_member(m.source) as src, open(target, "wb") as out:
            while chunk := src.read(CHUNK):
                budget -= len(chunk)
                if budget < 0:
                    raise Img2ImgError(
                        f"refusing to unpack {archive}: member '{m.path}' holds more data than the archive's header "
                        f"says. Delete {archive} and {checksum_file(archive)}, and check the download source ({BASE_URL_ENV})"
                    )
                out.write(chunk)


def safe_extract(
    archive: Path, dest: Path, max_bytes: int = DEFAULT_MAX_BYTES, max_members: int = DEFAULT_MAX_MEMBERS
) -> None:
    """Unpack a .zip or .tar.gz into the existing folder dest after validating every member.

    Raises Img2ImgError for an unsafe member (nothing written) or a corrupt archive.
    """
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                members = _zip_members(zf, archive)
                _check_totals(archive, members, max_bytes, max_members)
                _write_members(archive, members, dest, zf.open, max_bytes)
        else:
            with tarfile.open(archive, "r:*") as tf:
                members = _tar_members(tf, archive, max_members)
                _check_totals(archive, members, max_bytes, max_members)
                _write_members(archive, members, dest, tf.extractfile, max_bytes)
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, zlib.error, EOFError, NotImplementedError) as e:
        record = checksum_file(archive)
        raise Img2ImgError(
            f"archive {archive} is corrupt or unreadable ({e or type(e).__name__}). "
            f"Delete {archive} and {record} and run again to download it afresh"
        ) from None
    except OSError as e:
        raise Img2ImgError(f"cannot unpack {archive} into {dest}: {e}") from None


# ---------------------------------------------------------------- layout


def unpack_dataset(
    info: DatasetInfo,
    archive: Path,
    folder: Path,
    digest: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> None:
    """Unpack archive into a temporary folder next to folder, normalize the layout, check it,
    write the completion marker and rename the result to folder (which must not exist)."""
    root = folder.parent
    for stale in root.glob(f".{info.name}.*.unpacking"):  # left by a killed run (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{info.name}.", suffix=".unpacking", dir=root))
    try:
        safe_extract(archive, tmp, max_bytes, max_members)
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
