"""Dataset registry and downloader, against a local HTTP server that serves archives built from
real photos (skimage.data), supports Range requests and can drop a response half-way, stay
silent, or trickle. Time limits are lowered through Limits, so no test waits more than ~1 s."""

from __future__ import annotations

import hashlib
import io
import logging
import re
import socket
import stat
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from img2img import Img2ImgError
from img2img.data.archive import safe_extract
from img2img.data.download import ensure_dataset
from img2img.data.limits import Limits
from img2img.data.registry import COMPLETE_MARKER, DATASETS, data_root, format_table, get_dataset

LOG = logging.getLogger("test_download")
CYCLEGAN_PATH = "/cyclegan/datasets/horse2zebra.zip"
PIX2PIX_PATH = "/pix2pix/datasets/facades.tar.gz"
# The test archives are a few KB, not the registry's sizes: skip the plausible-size check unless a
# test is about it. Everything else keeps its default.
TEST_LIMITS = Limits(size_factor=None)


# ---------------------------------------------------------------- archives from real photos


def _jpeg(image: np.ndarray, box: tuple[int, int, int, int], size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).crop(box).resize((size, size), Image.BICUBIC).save(buf, "JPEG", quality=85)
    return buf.getvalue()


@pytest.fixture(scope="module")
def photos() -> dict[str, list[bytes]]:
    """Small JPEG crops of skimage's colour photos: 'a' (astronaut, cat, coffee), 'b' (rocket, motorcycle)."""
    from skimage import data

    a = [data.astronaut(), data.chelsea(), data.coffee()]
    b = [data.rocket(), data.stereo_motorcycle()[0]]  # the left view of the stereo pair

    def crops(images: list[np.ndarray]) -> list[bytes]:
        out = []
        for img in images:
            h, w = img.shape[:2]
            s = min(h, w)
            out += [_jpeg(img, (0, 0, s, s)), _jpeg(img, (w - s // 2, h - s // 2, w, h))]
        return out

    return {"a": crops(a), "b": crops(b)}


def _zip(entries: dict[str, bytes | zipfile.ZipInfo], extra: list[tuple[zipfile.ZipInfo, bytes]] = ()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for info, data in extra:
            zf.writestr(info, data)
    return buf.getvalue()


def cyclegan_zip(photos, top: str = "horse2zebra", extra=()) -> bytes:
    """Like upstream: horse2zebra/trainA/*.jpg ..., plus a __MACOSX entry that must be skipped."""
    a, b = photos["a"], photos["b"]
    entries = {f"{top}/trainA/a{i}.jpg": x for i, x in enumerate(a[:4])}
    entries |= {f"{top}/trainB/b{i}.jpg": x for i, x in enumerate(b[:3])}
    entries |= {f"{top}/testA/a{i}.jpg": x for i, x in enumerate(a[4:])}
    entries |= {f"{top}/testB/b{i}.jpg": x for i, x in enumerate(b[3:])}
    entries["__MACOSX/._junk"] = b"resource fork"
    return _zip(entries, list(extra))


def _side_by_side(a: bytes, b: bytes) -> bytes:
    left, right = Image.open(io.BytesIO(a)).convert("L").convert("RGB"), Image.open(io.BytesIO(b))
    ab = Image.new("RGB", (left.width * 2, left.height))
    ab.paste(left, (0, 0))
    ab.paste(right, (left.width, 0))
    buf = io.BytesIO()
    ab.save(buf, "JPEG")
    return buf.getvalue()


def _add(tf: tarfile.TarFile, name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    tf.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def pix2pix_tar(photos, extra: list[tuple[str, bytes, bytes, str]] = ()) -> bytes:
    """Like upstream: facades/train/1.jpg (A|B side by side), facades/val/, facades/test/."""
    pairs = [_side_by_side(x, x) for x in photos["a"] + photos["b"]]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        _add(tf, "facades", kind=tarfile.DIRTYPE)
        for split, chunk in (("train", pairs[:6]), ("val", pairs[6:8]), ("test", pairs[8:])):
            _add(tf, f"facades/{split}", kind=tarfile.DIRTYPE)
            for i, data in enumerate(chunk, 1):
                _add(tf, f"facades/{split}/{i}.jpg", data)
        for name, data, kind, link in extra:
            _add(tf, name, data, kind, link)
    return buf.getvalue()


# ---------------------------------------------------------------- a Range-capable test server


class _State:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_after: dict[str, int] = {}  # path -> bytes to send before dropping (next response only)
        self.silent: set[str] = set()  # paths whose requests get no answer at all, not even headers
        # path -> (bytes sent at once, then seconds between single bytes; None: nothing more, ever)
        self.pace: dict[str, tuple[int, float | None]] = {}
        self.closing = threading.Event()  # set at teardown: silent and paced handlers return
        self.lock = threading.Lock()


class _RangeHandler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, *args) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        state, rng = self.state, self.headers.get("Range")
        with state.lock:
            state.requests.append((self.path, rng))
            data = state.files.get(self.path)
            cut = state.cut_after.pop(self.path, None)
            pace = state.pace.get(self.path)
            silent = self.path in state.silent
        if silent:  # accept the request and send nothing
            state.closing.wait(10)
            return
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if pace is not None:
            self._paced(body, *pace)
            return
        if cut is None:
            self.wfile.write(body)
            return
        self.wfile.write(body[:cut])  # then drop the connection, as a flaky network would
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def _paced(self, body: bytes, head: int, interval: float | None) -> None:
        """Send head bytes, then one byte per interval (or nothing), until the client hangs up."""
        try:
            self.wfile.write(body[:head])
            for i in range(head, len(body)):
                if interval is None or self.state.closing.wait(interval):
                    break
                self.wfile.write(body[i : i + 1])
            self.state.closing.wait(10)  # keep the connection open, silent
        except OSError:  # the client gave up
            pass
        self.close_connection = True


class Server:
    def __init__(self) -> None:
        self.state = _State()
        handler = type("Handler", (_RangeHandler,), {"state": self.state})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        # A short poll interval makes shutdown() quick at teardown.
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def gets(self, path: str) -> list[str | None]:
        """The Range headers of the requests for path, in order."""
        return [rng for p, rng in self.state.requests if p == path]

    def close(self) -> None:
        self.state.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    srv = Server()
    yield srv
    srv.close()


def fetch(name: str, root: Path, server: Server, **kw) -> Path:
    kw.setdefault("progress", False)
    kw.setdefault("retries", 0)
    kw.setdefault("limits", TEST_LIMITS)
    return ensure_dataset(name, root, LOG, base_url=server.url, **kw)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def assert_nothing_outside(tmp_path: Path, root: Path) -> None:
    """Only the cache root exists beside it, and the cache holds no dataset or temp folder."""
    assert names(tmp_path) == [root.name]
    assert [p for p in root.iterdir() if p.is_dir()] == []
    assert [p for p in tmp_path.rglob("*") if "evil" in p.name] == []


# ---------------------------------------------------------------- registry


def test_registry_lists_both_families_with_distinct_names():
    cyclegan = {n for n, d in DATASETS.items() if d.method == "cyclegan"}
    pix2pix = {n for n, d in DATASETS.items() if d.method == "pix2pix"}
    assert {"horse2zebra", "facades", "maps", "ae_photos", "iphone2dslr_flower"} <= cyclegan
    assert {"facades_pix2pix", "maps_pix2pix", "edges2shoes", "edges2handbags", "night2day"} <= pix2pix
    assert get_dataset("facades_pix2pix").url_path == "pix2pix/datasets/facades.tar.gz"
    assert get_dataset("facades").url_path == "cyclegan/datasets/facades.zip"
    assert all(d.preset == d.method for d in DATASETS.values())
    assert all(d.archive == ("zip" if d.method == "cyclegan" else "tar.gz") for d in DATASETS.values())


def test_unknown_name_lists_valid_ones():
    with pytest.raises(Img2ImgError) as e:
        get_dataset("horse2unicorn")
    assert "horse2unicorn" in str(e.value) and "horse2zebra" in str(e.value) and "edges2shoes" in str(e.value)
    assert "--data" in str(e.value)


def test_cityscapes_is_not_downloadable(tmp_path):
    with pytest.raises(Img2ImgError, match="licence"):
        ensure_dataset("cityscapes_pix2pix", tmp_path, LOG, base_url="http://127.0.0.1:9")
    assert "manual" in format_table(tmp_path)


def test_data_root_and_env(monkeypatch, tmp_path):
    assert data_root(None, env={}) == Path("~/.cache/img2img/datasets").expanduser()
    assert data_root(None, env={"IMG2IMG_DATA": str(tmp_path)}) == tmp_path
    assert data_root(tmp_path / "x", env={"IMG2IMG_DATA": "/elsewhere"}) == tmp_path / "x"


# ---------------------------------------------------------------- download and layout


def test_cyclegan_zip_download_and_layout(server, photos, tmp_path):
    server.state.files[CYCLEGAN_PATH] = archive = cyclegan_zip(photos)
    root = tmp_path / "cache"
    folder = fetch("horse2zebra", root, server, progress=True)
    assert folder == root / "horse2zebra"
    assert names(folder) == [COMPLETE_MARKER, "testA", "testB", "trainA", "trainB"]
    assert [len(names(folder / d)) for d in ("trainA", "trainB", "testA", "testB")] == [4, 3, 2, 1]
    with Image.open(folder / "trainA" / "a0.jpg") as img:
        assert img.size == (64, 64)
    sha = hashlib.sha256(archive).hexdigest()
    assert (root / "horse2zebra.zip.sha256").read_text().split()[0] == sha
    assert not (root / "horse2zebra.zip.part").exists()
    table = {line.split()[0]: line.split() for line in format_table(root).splitlines() if line.strip()}
    assert table["horse2zebra"] == ["horse2zebra", "cyclegan", "~111", "MB", "yes"]
    assert table["apple2orange"][-1] == "no"

    assert fetch("horse2zebra", root, server) == folder  # cached: no second request
    assert server.gets(CYCLEGAN_PATH) == [None]


def test_pix2pix_tar_download_and_layout(server, photos, tmp_path):
    server.state.files[PIX2PIX_PATH] = pix2pix_tar(photos)
    folder = fetch("facades_pix2pix", tmp_path, server)
    assert folder == tmp_path / "facades_pix2pix"
    assert names(folder) == [COMPLETE_MARKER, "test", "train", "val"]
    for split, count in (("train", 6), ("val", 2), ("test", 2)):
        assert names(folder / split) == ["AB"]
        assert len(names(folder / split / "AB")) == count
    with Image.open(folder / "train" / "AB" / "1.jpg") as img:
        assert img.size == (128, 64)
    fetch("facades_pix2pix", tmp_path, server)
    assert server.gets(PIX2PIX_PATH) == [None]


def test_env_chooses_mirror_and_cache(server, photos, tmp_path, monkeypatch):
    server.state.files[CYCLEGAN_PATH] = cyclegan_zip(photos)
    monkeypatch.setenv("IMG2IMG_DATASETS_URL", server.url + "/")
    monkeypatch.setenv("IMG2IMG_DATA", str(tmp_path / "env-cache"))
    folder = ensure_dataset("horse2zebra", log=LOG, progress=False, limits=TEST_LIMITS)
    assert folder == tmp_path / "env-cache" / "horse2zebra"


def test_concurrent_callers_download_once(server, photos, tmp_path):
    server.state.files[CYCLEGAN_PATH] = cyclegan_zip(photos)
    results, errors = [], []

    def worker() -> None:
        try:
            results.append(fetch("horse2zebra", tmp_path, server))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [tmp_path / "horse2zebra"] * 3
    assert server.gets(CYCLEGAN_PATH) == [None]


# ---------------------------------------------------------------- resume


def test_dropped_download_resumes_with_range(server, photos, tmp_path):
    server.state.files[PIX2PIX_PATH] = archive = pix2pix_tar(photos)
    half = len(archive) // 2
    server.state.cut_after[PIX2PIX_PATH] = half
    with pytest.raises(Img2ImgError) as e:
        fetch("facades_pix2pix", tmp_path, server)
    message = str(e.value)
    assert server.url + PIX2PIX_PATH in message and "again" in message and "resumes" in message
    part = tmp_path / "facades.tar.gz.part"
    assert part.stat().st_size == half and not (tmp_path / "facades_pix2pix").exists()

    folder = fetch("facades_pix2pix", tmp_path, server)
    assert server.gets(PIX2PIX_PATH) == [None, f"bytes={half}-"]
    sha = hashlib.sha256(archive).hexdigest()
    assert hashlib.sha256((tmp_path / "facades.tar.gz").read_bytes()).hexdigest() == sha
    assert (tmp_path / "facades.tar.gz.sha256").read_text().split()[0] == sha
    assert len(names(folder / "train" / "AB")) == 6


def test_dropped_download_is_resumed_automatically(server, photos, tmp_path):
    server.state.files[CYCLEGAN_PATH] = archive = cyclegan_zip(photos)
    server.state.cut_after[CYCLEGAN_PATH] = 1000
    fetch("horse2zebra", tmp_path, server, retries=1)
    assert server.gets(CYCLEGAN_PATH) == [None, "bytes=1000-"]
    assert (tmp_path / "horse2zebra.zip").read_bytes() == archive


def test_complete_part_file_is_accepted_on_416(server, photos, tmp_path):
    server.state.files[CYCLEGAN_PATH] = archive = cyclegan_zip(photos)
    (tmp_path / "horse2zebra.zip.part").write_bytes(archive)  # a crash just before the rename
    fetch("horse2zebra", tmp_path, server)
    assert server.gets(CYCLEGAN_PATH) == [f"bytes={len(archive)}-"]
    assert (tmp_path / "horse2zebra" / COMPLETE_MARKER).is_file()


# ---------------------------------------------------------------- errors


def test_404_names_url_and_ways_out(server, tmp_path):
    with pytest.raises(Img2ImgError) as e:
        fetch("horse2zebra", tmp_path, server)
    message = str(e.value)
    assert server.url + CYCLEGAN_PATH in message and "404" in message
    assert "IMG2IMG_DATASETS_URL" in message and "--data DIR" in message and "img2img serve" in message
    assert "\n" not in message


def test_unreachable_server(tmp_path):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(Img2ImgError, match=f"cannot download http://127.0.0.1:{port}/cyclegan"):
        ensure_dataset("horse2zebra", tmp_path, LOG, base_url=f"http://127.0.0.1:{port}", progress=False, retries=0)


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_corrupt_archive_is_reported(server, photos, tmp_path, damage, kind):
    path, name = (CYCLEGAN_PATH, "horse2zebra") if kind == "zip" else (PIX2PIX_PATH, "facades_pix2pix")
    data = bytearray(cyclegan_zip(photos) if kind == "zip" else pix2pix_tar(photos))
    if damage == "truncated":
        data = data[: len(data) // 2]
    else:
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    server.state.files[path] = bytes(data)
    with pytest.raises(Img2ImgError, match="corrupt") as e:
        fetch(name, tmp_path, server)
    archive = tmp_path / f"{path.rsplit('/', 1)[1]}"
    assert str(archive) in str(e.value)
    if kind == "zip" and damage == "truncated":  # no central directory: refused before the checksum
        assert "it was deleted" in str(e.value) and not archive.exists()
        assert not (tmp_path / f"{archive.name}.sha256").exists()
    else:  # only unpacking reads the whole stream
        assert "Delete" in str(e.value)
    assert not (tmp_path / name).exists()
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []


def test_changed_archive_fails_checksum(server, photos, tmp_path):
    server.state.files[CYCLEGAN_PATH] = cyclegan_zip(photos)
    folder = fetch("horse2zebra", tmp_path, server)

    # A half-extracted folder (no marker) is redone from the cached archive, without a download.
    (folder / COMPLETE_MARKER).unlink()
    (folder / "trainA" / "a0.jpg").unlink()
    fetch("horse2zebra", tmp_path, server)
    assert len(names(folder / "trainA")) == 4 and server.gets(CYCLEGAN_PATH) == [None]

    # The archive changes behind our back: unpacking it again must fail on the recorded sha256.
    (folder / COMPLETE_MARKER).unlink()
    (tmp_path / "horse2zebra.zip").write_bytes(cyclegan_zip(photos, top="other"))
    with pytest.raises(Img2ImgError, match="checksum") as e:
        fetch("horse2zebra", tmp_path, server)
    assert "horse2zebra.zip.sha256" in str(e.value) and "Delete" in str(e.value)


def test_wrong_layout_is_reported(server, tmp_path, photos):
    server.state.files[CYCLEGAN_PATH] = _zip({"horse2zebra/photos/a.jpg": photos["a"][0]})
    with pytest.raises(Img2ImgError, match="trainA"):
        fetch("horse2zebra", tmp_path, server)
    assert [p for p in tmp_path.iterdir() if p.is_dir()] == []


# ---------------------------------------------------------------- unsafe archives


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def _unsafe_zips(tmp_path: Path) -> dict[str, tuple[zipfile.ZipInfo, bytes]]:
    absolute = zipfile.ZipInfo(f"{tmp_path}/abs_evil.txt")
    assert absolute.filename.startswith("/")
    return {
        "dotdot": (zipfile.ZipInfo("horse2zebra/../../dotdot_evil.txt"), b"x"),
        "absolute": (absolute, b"x"),
        "symlink": (_symlink_info("horse2zebra/trainA/evil_link"), b"../../../../etc/passwd"),
    }


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink"])
def test_unsafe_zip_is_refused(server, photos, tmp_path, case):
    member = _unsafe_zips(tmp_path)[case]
    server.state.files[CYCLEGAN_PATH] = cyclegan_zip(photos, extra=[member])
    root = tmp_path / "cache"
    with pytest.raises(Img2ImgError, match="refusing to unpack") as e:
        fetch("horse2zebra", root, server)
    assert member[0].filename in str(e.value)
    assert_nothing_outside(tmp_path, root)


@pytest.mark.parametrize(
    "name,kind,link",
    [
        ("facades/train/evil_sym.jpg", tarfile.SYMTYPE, "../../../evil_target"),
        ("facades/train/evil_hard.jpg", tarfile.LNKTYPE, "/etc/passwd"),
        ("facades/../../evil_dotdot.jpg", tarfile.REGTYPE, ""),
        ("/tmp/evil_abs.jpg", tarfile.REGTYPE, ""),
        ("facades/evil_fifo", tarfile.FIFOTYPE, ""),
    ],
)
def test_unsafe_tar_is_refused(server, photos, tmp_path, name, kind, link):
    server.state.files[PIX2PIX_PATH] = pix2pix_tar(photos, extra=[(name, b"x", kind, link)])
    root = tmp_path / "cache"
    with pytest.raises(Img2ImgError, match="refusing to unpack") as e:
        fetch("facades_pix2pix", root, server)
    assert name in str(e.value)
    assert_nothing_outside(tmp_path, root)
    assert not Path("/tmp/evil_abs.jpg").exists()


def test_validation_happens_before_any_write(photos, tmp_path):
    """The bad member comes last; not even the good ones before it are written."""
    archive = tmp_path / "a.zip"
    archive.write_bytes(cyclegan_zip(photos, extra=[_unsafe_zips(tmp_path)["dotdot"]]))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(Img2ImgError, match="'..'"):
        safe_extract(archive, dest)
    assert list(dest.iterdir()) == []


def test_size_and_count_limits(photos, tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(cyclegan_zip(photos))
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(Img2ImgError, match="over the 1.0 KB limit"):
        safe_extract(archive, dest, Limits(max_bytes=1000))
    with pytest.raises(Img2ImgError, match="limit of 3 members"):
        safe_extract(archive, dest, Limits(max_members=3))
    assert list(dest.iterdir()) == []
    tar = tmp_path / "a.tar.gz"
    tar.write_bytes(pix2pix_tar(photos))
    with pytest.raises(Img2ImgError, match="limit of 3 members"):
        safe_extract(tar, dest, Limits(max_members=3))
    assert list(dest.iterdir()) == []


# ---------------------------------------------------------------- zip bombs


ZEROS = 4 << 20  # 4 MB of zeros deflate to about 4 KB (1000:1); with the limits lowered that is plenty


def _zeros_zip(photos, count: int = 1) -> bytes:
    """A real horse2zebra layout plus count members of 4 MB of zeros named like photos."""
    extra = [(zipfile.ZipInfo(f"horse2zebra/trainA/zeros{i}.jpg"), bytes(ZEROS)) for i in range(count)]
    for info, _ in extra:
        info.compress_type = zipfile.ZIP_DEFLATED
    return cyclegan_zip(photos, extra=extra)


def _zeros_tar(photos) -> bytes:
    return pix2pix_tar(photos, extra=[("facades/train/zeros.jpg", bytes(ZEROS), tarfile.REGTYPE, "")])


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_zip_bomb_is_refused_by_its_compression_ratio(server, photos, tmp_path, kind):
    """Before: members of zeros were unpacked in full, whatever they expanded to."""
    root = tmp_path / "cache"
    if kind == "zip":  # each zip member has its own compressed size: the default 200:1 applies
        server.state.files[CYCLEGAN_PATH] = _zeros_zip(photos)
        name, limits, member = "horse2zebra", TEST_LIMITS, "'horse2zebra/trainA/zeros0.jpg'"
    else:  # a tar.gz is one stream: the whole archive's ratio (here ~70:1, so the limit is lowered)
        server.state.files[PIX2PIX_PATH] = _zeros_tar(photos)
        name, limits, member = "facades_pix2pix", replace(TEST_LIMITS, max_ratio=20), "it would expand"
    with pytest.raises(Img2ImgError, match="refusing to unpack") as e:
        fetch(name, root, server, limits=limits)
    message = str(e.value)
    assert member in message and "zip bomb" in message and f"over the {limits.max_ratio:g}:1 limit" in message
    assert "Nothing was extracted" in message and "\n" not in message
    assert_nothing_outside(tmp_path, root)


def test_unpacking_is_bounded_by_the_listed_size(server, photos, tmp_path):
    """The budget is a multiple of the registry's size (111 MB for horse2zebra), not 20 GiB.
    Lowered to 0.02 x here (2.2 MB) so three 4 MB members trip it; the ratio rule is off."""
    server.state.files[CYCLEGAN_PATH] = _zeros_zip(photos, count=3)
    root = tmp_path / "cache"
    limits = replace(TEST_LIMITS, unpack_factor=0.02, max_ratio=1e9)
    with pytest.raises(Img2ImgError, match="refusing to unpack") as e:
        fetch("horse2zebra", root, server, limits=limits)
    assert "it would unpack to 12.6 MB, over the 2.2 MB limit (0.02 x the 111.0 MB archive)" in str(e.value)
    assert_nothing_outside(tmp_path, root)
    # The same archive with the default budget (4 x 111 MB) unpacks: the limit is what refused it.
    assert (fetch("horse2zebra", root, server, limits=replace(TEST_LIMITS, max_ratio=1e9)) / "trainA").is_dir()


def test_default_limits_scale_with_the_dataset():
    limits = Limits()
    assert limits.unpack_budget(111_000_000) == (444_000_000, "4 x the 111.0 MB archive")
    assert limits.unpack_budget(8_600_000_000) == (20 * 1024**3, "the absolute cap")  # edges2handbags
    assert limits.unpack_budget(0)[0] == 20 * 1024**3  # unknown size
    assert 30 * 60 < limits.total_s(111_000_000) < 60 * 60  # horse2zebra: under an hour, even slowly
    assert limits.total_s(8_600_000_000) < 50 * 3600


# ---------------------------------------------------------------- stalled and trickling downloads


FAST = replace(TEST_LIMITS, stall_s=0.5, min_rate=1000, rate_window_s=0.5)


def _timed_fetch(name: str, root: Path, server: Server, **kw) -> tuple[str, float]:
    start = time.monotonic()
    with pytest.raises(Img2ImgError) as e:
        fetch(name, root, server, **kw)
    return str(e.value), time.monotonic() - start


def _says_what_to_do(message: str) -> None:
    assert "again later" in message and "--data DIR" in message and "img2img serve" in message
    assert "\n" not in message


def test_silent_server_is_cut_off_and_not_asked_again(server, tmp_path):
    """Before: a server that accepts and answers nothing held the download for 60 s x 4 tries."""
    server.state.silent.add(CYCLEGAN_PATH)
    message, took = _timed_fetch("horse2zebra", tmp_path, server, limits=FAST, retries=3)
    assert "no data arrived for 0.5 s: the server stalled" in message
    _says_what_to_do(message)
    assert took < 3 and server.gets(CYCLEGAN_PATH) == [None]  # retrying would only wait again


def test_trickle_is_cut_off_by_the_minimum_rate(server, photos, tmp_path):
    """Before: 1 byte per 0.1 s was never cut off (every read came within the timeout)."""
    server.state.files[CYCLEGAN_PATH] = cyclegan_zip(photos)
    server.state.pace[CYCLEGAN_PATH] = (0, 0.1)
    message, took = _timed_fetch("horse2zebra", tmp_path, server, limits=FAST, retries=3)
    assert re.search(r"the server sent \d+ bytes/s over the last 0\.?\d* s, under the minimum of 1\.0 KB/s", message), message
    _says_what_to_do(message)
    assert "resumes where it stopped" in message  # the few bytes received are kept
    assert took < 3 and server.gets(CYCLEGAN_PATH) == [None]


def test_retries_share_one_time_limit(server, photos, tmp_path):
    """A server that sends 100 bytes then stalls, every time: each stall after progress is resumed,
    but all attempts together stop at the total limit (1 s here), however many retries are allowed."""
    server.state.files[CYCLEGAN_PATH] = cyclegan_zip(photos)
    server.state.pace[CYCLEGAN_PATH] = (100, None)
    limits = replace(TEST_LIMITS, stall_s=0.3, min_rate=0, total_floor_s=1.0, total_rate=1e12)
    message, took = _timed_fetch("horse2zebra", tmp_path, server, limits=limits, retries=100)
    assert "the download took longer than its time limit of 1 s for a ~111.0 MB archive" in message
    _says_what_to_do(message)
    ranges = server.gets(CYCLEGAN_PATH)
    assert took < 3 and 2 <= len(ranges) <= 5
    assert ranges == [None] + [f"bytes={100 * i}-" for i in range(1, len(ranges))]  # each one resumed


def test_dns_failure_is_not_retried_nor_called_interrupted(monkeypatch, tmp_path, caplog):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kw):
        if host == "datasets.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    start = time.monotonic()
    with caplog.at_level(logging.WARNING), pytest.raises(Img2ImgError) as e:
        ensure_dataset("horse2zebra", tmp_path, LOG, base_url="http://datasets.invalid", progress=False, retries=3)
    message = str(e.value)
    assert "cannot resolve the host name datasets.invalid (Name or service not known): no network, or no DNS" in message
    _says_what_to_do(message)
    assert "interrupted" not in message + caplog.text
    assert time.monotonic() - start < 1  # three retries would have slept 1 + 2 + 4 s


def test_refused_connection_is_not_called_interrupted(tmp_path, caplog):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with caplog.at_level(logging.WARNING), pytest.raises(Img2ImgError, match="Connection refused"):
        ensure_dataset("horse2zebra", tmp_path, LOG, base_url=f"http://127.0.0.1:{port}", progress=False, retries=1)
    assert "failed (" in caplog.text and "retrying in 1 s (1 of 1)" in caplog.text
    assert "interrupted" not in caplog.text
    # With no time left for the wait before a retry, the failure itself is reported, at once.
    start = time.monotonic()
    with pytest.raises(Img2ImgError, match="Connection refused"):
        ensure_dataset("horse2zebra", tmp_path, LOG, base_url=f"http://127.0.0.1:{port}", progress=False,
                       retries=3, limits=replace(TEST_LIMITS, total_floor_s=0.5, total_rate=1e12))
    assert time.monotonic() - start < 0.5


# ---------------------------------------------------------------- a bad download is not kept


HTML = b"<!DOCTYPE html>\n<html><head><title>503 Service Unavailable</title></head>\n<body>Try later</body></html>\n"


@pytest.mark.parametrize("case", ["html", "zip for tar.gz"])
def test_bad_download_is_deleted_and_fetched_again(server, photos, tmp_path, case):
    """Before: the page was kept as the archive, its sha256 recorded and reused on every run."""
    if case == "html":
        path, name, body, good = CYCLEGAN_PATH, "horse2zebra", HTML, cyclegan_zip(photos)
        what = f"is an HTML page of {len(HTML)} bytes instead of the ~111.0 MB zip archive"
    else:
        path, name, body, good = PIX2PIX_PATH, "facades_pix2pix", cyclegan_zip(photos), pix2pix_tar(photos)
        what = "is a zip file that is not a tar.gz archive of"
    server.state.files[path] = body
    archive = tmp_path / path.rsplit("/", 1)[1]
    with pytest.raises(Img2ImgError) as e:
        fetch(name, tmp_path, server)
    message = str(e.value)
    assert what in message and f"it was deleted ({archive})" in message
    _says_what_to_do(message)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == []

    server.state.files[path] = good  # the server recovers: the next run downloads again
    assert (fetch(name, tmp_path, server) / COMPLETE_MARKER).is_file()
    assert server.gets(path) == [None, None]


def test_implausible_size_is_deleted(server, photos, tmp_path):
    """A real zip of 19 KB for a dataset listed at 111 MB is not the dataset (default size check)."""
    server.state.files[CYCLEGAN_PATH] = cyclegan_zip(photos)
    with pytest.raises(Img2ImgError) as e:
        fetch("horse2zebra", tmp_path, server, limits=Limits())
    assert re.search(r"is a zip archive of [\d.]+ KB, more than 4 x smaller than the ~111.0 MB listed; it was deleted", str(e.value))
    assert not (tmp_path / "horse2zebra.zip").exists() and not (tmp_path / "horse2zebra.zip.sha256").exists()


# ---------------------------------------------------------------- what training reads


def test_training_reads_the_normalized_layout(server, photos, tmp_path):
    from img2img.config import DataConfig
    from img2img.data.datasets import build_dataset

    server.state.files[CYCLEGAN_PATH] = cyclegan_zip(photos)
    server.state.files[PIX2PIX_PATH] = pix2pix_tar(photos)
    small = {"load_size": 40, "crop_size": 32, "num_workers": 0}
    unpaired = build_dataset(DataConfig(kind="unpaired", **small), fetch("horse2zebra", tmp_path, server), 0, LOG)
    paired = build_dataset(DataConfig(kind="paired", **small), fetch("facades_pix2pix", tmp_path, server), 0, LOG)
    assert len(unpaired) >= 3 and len(paired) == 6
    for item in (unpaired[0], paired[0]):
        assert {tuple(t.shape) for t in item.values() if hasattr(t, "shape")} == {(3, 32, 32)}
