"""Checking a downloaded dataset archive and unpacking it safely into the layout training reads.

- A finished download must open as an archive of the expected kind and be of plausible size
  before its checksum is recorded: an HTML error page served as the archive is deleted, not kept.
- Its SHA-256 is recorded in ``<archive>.sha256`` on first download (or checked against the
  registry's pinned value) and checked whenever it is unpacked again.
- Every member is validated before anything is written (no absolute paths, no ``..``, no links or
  special files, bounded size, count and compression ratio); files are then written one by one
  into a temporary folder inside the cache root, counting the bytes really written against a
  budget derived from the dataset's listed size, and renamed into place. Nothing can land outside
  the root, and a refused archive leaves no folder behind.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath

from img2img import Img2ImgError
from img2img.data.images import IMAGE_EXTENSIONS
from img2img.data.limits import CHUNK, DEFAULT_LIMITS, OFFLINE_HINT, Limits, file_size, human_size, listed_bytes
from img2img.data.registry import BASE_URL_ENV, COMPLETE_MARKER, DatasetInfo
from img2img.io import atomic_write

# Folder names that are already the dataset layout, so a single one of them is not a wrapper.
LAYOUT_DIRS = {"trainA", "trainB", "testA", "testB", "train", "val", "test"}


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
    size, listed, factor = file_size(archive), listed_bytes(info), limits.size_factor
    expected = f"the ~{human_size(listed)} {info.archive} archive" if listed else f"a {info.archive} archive"
    problem = _not_an_archive(archive, info.archive)
    if problem is not None:
        what = f"{problem} of {human_size(size)} instead of {expected} (a server error page, a captive portal?)"
    elif factor and listed and not listed / factor <= size <= listed * factor:
        what = (f"a {info.archive} archive of {human_size(size)}, more than {factor:g} x "
                f"{'smaller' if size < listed else 'larger'} than the ~{human_size(listed)} listed")
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
    ratio_rule = f"over the {limits.max_ratio:g}:1 limit for anything above {human_size(limits.ratio_floor)}: a zip bomb"
    for m in members:  # zip members carry their compressed size: check each one
        if m.packed is not None and m.size > limits.ratio_floor and m.size > limits.max_ratio * max(m.packed, 1):
            ratio = m.size / max(m.packed, 1)
            raise _unsafe(archive, m.path.as_posix(), f"would expand {human_size(m.packed)} into {human_size(m.size)} "
                                                      f"({ratio:.0f}:1), {ratio_rule}")
    total = sum(m.size for m in members)
    packed = file_size(archive)
    is_tar = not archive.name.endswith(".zip")
    if is_tar and total > limits.ratio_floor and total > limits.max_ratio * max(packed, 1):
        # A tar.gz is one compressed stream, so only the whole archive's ratio is known up front.
        raise _refused(archive, f"it would expand {human_size(packed)} into {human_size(total)} ({total / max(packed, 1):.0f}:1), {ratio_rule}")
    if total > budget:
        raise _refused(archive, f"it would unpack to {human_size(total)}, over the {human_size(budget)} limit ({basis})")


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
                        f"stopped unpacking {archive} at member '{m.path}': it wrote more than the {human_size(budget)} limit "
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
    budget, basis = limits.unpack_budget(max(listed or 0, file_size(archive)))
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
