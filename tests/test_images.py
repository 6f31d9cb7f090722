"""The image loader on real edge-case files: Pillow's own test images (its sdist's Tests/images).

The sdist of the installed Pillow version is fetched once with
`pip download --no-deps --no-binary :all: pillow==<version>` into $IMG2IMG_TEST_CACHE
(default ~/.cache/img2img-test); only the files below are extracted. Without network access the
tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

from conftest import TINY, photo
from img2img.config import load_config
from img2img.data.datasets import build_dataset
from img2img.data.images import ImageReadError, load_image

ORIENTED = [f"hopper_orientation_{i}.{ext}" for i in range(2, 9) for ext in ("jpg", "webp")]
GOOD = [
    "hopper.jpg", "hopper.tif", "hopper.Lab.tif", "hopper_gray.jpg", "hopper_8bit.pgm", "hopper_16bit.pgm",
    "orientation_rectangle.jpg", "exif_imagemagick_orientation.png", "hopper_bad_exif.jpg",
    "pil_sample_cmyk.jpg", "pil_sample_rgb.jpg", "tiff_strip_cmyk_jpeg.tif",
    "16bit.cropped.tif", "16bit.MM.cropped.tif",
    "transparent.gif", "transparent.png", "p_trns_single.png", "rgb_trns.png", "l_trns.png", "la.tga",
    "i_trns.png", "pil123rgba.png",
]
BROKEN = ["truncated_jpeg.jpg", "truncated_image.png", "truncated_end_chunk.png", "broken.png", "broken_data_stream.png"]
FILES = ORIENTED + GOOD + BROKEN


def _cache_dir() -> Path:
    return Path(os.environ.get("IMG2IMG_TEST_CACHE", "~/.cache/img2img-test")).expanduser()


def _download_sdist(cache: Path, version: str) -> Path:
    found = sorted(cache.glob(f"[Pp]illow-{version}.tar.gz"))
    if found:
        return found[0]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", f"pillow=={version}",
           "-d", str(cache), "--disable-pip-version-check", "--quiet"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot download Pillow's sdist for its test images ({e}); needs access to PyPI")
    found = sorted(cache.glob(f"[Pp]illow-{version}.tar.gz"))
    if r.returncode != 0 or not found:
        tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"cannot download Pillow's sdist for its test images ({tail}); needs access to PyPI")
    return found[0]


@pytest.fixture(scope="session")
def pillow_images() -> Path:
    """A folder holding FILES from Pillow's Tests/images, cached across sessions."""
    version = PIL.__version__
    cache = _cache_dir()
    folder = cache / f"pillow-{version}-images"
    if all((folder / name).is_file() for name in FILES):
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    sdist = _download_sdist(cache, version)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=".extract-"))
    try:
        with tarfile.open(sdist) as tar:
            wanted = {f"Tests/images/{name}" for name in FILES}
            members = [m for m in tar.getmembers() if m.isfile() and m.name.split("/", 1)[-1] in wanted]
            for m in members:
                (tmp / Path(m.name).name).write_bytes(tar.extractfile(m).read())
        missing = sorted(set(FILES) - {p.name for p in tmp.iterdir()})
        if missing:
            pytest.skip(f"Pillow {version}'s sdist lacks test images {missing}")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def rgb(folder: Path, name: str, **kw) -> np.ndarray:
    img = load_image(folder / name, **kw)
    assert img.mode == "RGB"
    return np.asarray(img).astype(np.int16)


def mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(float) - b).mean())


@pytest.mark.parametrize("name", ORIENTED)
def test_exif_orientation_is_undone(pillow_images, name):
    """hopper_orientation_N stores the upright hopper.jpg transformed by EXIF orientation N."""
    upright = rgb(pillow_images, "hopper.jpg")
    assert mean_diff(rgb(pillow_images, name), upright) < 8  # JPEG/WebP re-encoding noise only
    raw = np.asarray(Image.open(pillow_images / name).convert("RGB"))
    assert mean_diff(raw, upright) > 40  # without the EXIF step it would be mirrored / rotated
    if name.endswith(".jpg"):  # decoding at reduced size (JPEG DCT scaling) keeps the orientation step
        small = rgb(pillow_images, name, draft=(64, 64))
        assert small.shape == (64, 64, 3) and mean_diff(small, rgb(pillow_images, "hopper.jpg", draft=(64, 64))) < 8


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_exif_orientation_swaps_width_and_height(pillow_images):
    # orientation_rectangle.jpg: stored 2x1, orientation 8 (rotate 90 degrees) -> 1 wide, 2 high.
    assert Image.open(pillow_images / "orientation_rectangle.jpg").size == (2, 1)
    assert load_image(pillow_images / "orientation_rectangle.jpg").size == (1, 2)
    assert load_image(pillow_images / "orientation_rectangle.jpg", draft=(1, 1)).size == (1, 2)
    # EXIF in a PNG (eXIf chunk), orientation 3: rotated by 180 degrees.
    raw = Image.open(pillow_images / "exif_imagemagick_orientation.png").convert("RGB")
    assert np.array_equal(rgb(pillow_images, "exif_imagemagick_orientation.png"), np.asarray(raw.rotate(180)))
    # A corrupt EXIF block is ignored, not fatal.
    assert load_image(pillow_images / "hopper_bad_exif.jpg").size == (500, 500)


def test_cmyk_matches_the_rgb_reference(pillow_images):
    ref = rgb(pillow_images, "pil_sample_rgb.jpg")  # the same picture saved as RGB
    for name in ("pil_sample_cmyk.jpg", "tiff_strip_cmyk_jpeg.tif"):
        got = rgb(pillow_images, name)
        assert mean_diff(got, ref) < 8
        assert np.abs(got.mean((0, 1)) - ref.mean((0, 1))).max() < 5  # no inverted or swapped channels


def test_16bit_is_scaled_to_8bit(pillow_images):
    # hopper_16bit.pgm holds hopper_8bit.pgm's values times 257.
    assert np.array_equal(rgb(pillow_images, "hopper_16bit.pgm"), rgb(pillow_images, "hopper_8bit.pgm"))
    # Little- and big-endian 16-bit TIFFs of the same data agree, scaled by 255 / 65535.
    le, be = rgb(pillow_images, "16bit.cropped.tif"), rgb(pillow_images, "16bit.MM.cropped.tif")
    raw = np.asarray(Image.open(pillow_images / "16bit.cropped.tif")).astype(float)
    assert np.array_equal(le, be)
    assert np.array_equal(le[..., 0], np.floor(raw * 255 / 65535 + 0.5).astype(np.int16))
    assert (le[..., 0] == le[..., 1]).all() and (le[..., 1] == le[..., 2]).all()


def test_grey_lab_and_rgb(pillow_images):
    grey = rgb(pillow_images, "hopper_gray.jpg")
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert mean_diff(rgb(pillow_images, "hopper.Lab.tif"), rgb(pillow_images, "hopper.tif")) < 4


def test_transparency_is_composited_on_white(pillow_images):
    # A GIF with a transparent palette entry and the same picture as RGBA PNG.
    assert mean_diff(rgb(pillow_images, "transparent.gif"), rgb(pillow_images, "transparent.png")) < 2
    for name in ("transparent.png", "pil123rgba.png", "p_trns_single.png", "la.tga"):
        rgba = np.asarray(Image.open(pillow_images / name).convert("RGBA"))
        clear = rgba[..., 3] == 0
        assert clear.mean() > 0.05, name
        assert (rgb(pillow_images, name)[clear] == 255).all(), name
    # tRNS colour keys: a palette PNG and an RGB PNG of one picture; a grey PNG and a grey+alpha TGA.
    assert np.array_equal(rgb(pillow_images, "p_trns_single.png"), rgb(pillow_images, "rgb_trns.png"))
    assert np.array_equal(rgb(pillow_images, "l_trns.png"), rgb(pillow_images, "la.tga"))
    # 16-bit grey with a tRNS key: keyed pixels are white.
    key = np.asarray(Image.open(pillow_images / "i_trns.png")) == Image.open(pillow_images / "i_trns.png").info["transparency"]
    assert key.any() and (rgb(pillow_images, "i_trns.png")[key] == 255).all()


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_raise_naming_the_file(pillow_images, name):
    with pytest.raises(ImageReadError, match=rf"{name}: cannot read image \(.+\); replace or remove the file") as e:
        load_image(pillow_images / name)
    assert e.value.path == str(pillow_images / name)


def test_dataset_skips_broken_files_once_and_strict_fails(pillow_images, tmp_path, log, caplog):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ["hopper.jpg", "pil_sample_cmyk.jpg", "hopper_16bit.pgm", "transparent.gif", "hopper_orientation_6.jpg", *BROKEN]:
        shutil.copy(pillow_images / name, folder / name)
    cfg = load_config("colorization", [*TINY, "data.load_size=48"]).data
    ds = build_dataset(cfg, folder, seed=0, log=log)
    # broken.png fails the header scan: one summary line names it.
    summary = [r.getMessage() for r in caplog.records if "unreadable image(s)" in r.getMessage()]
    assert len(summary) == 1 and "skipping 1 unreadable" in summary[0] and "broken.png" in summary[0]
    assert len(ds) == 9  # the other broken files have good headers; they fail when decoded
    items = [ds[k] for k in range(3 * len(ds))]  # three epochs
    assert all(i["A"].shape == (1, 32, 32) and i["B"].shape == (3, 32, 32) for i in items)
    for name in ("truncated_jpeg.jpg", "truncated_image.png", "truncated_end_chunk.png", "broken_data_stream.png"):
        reports = [r.getMessage() for r in caplog.records if name in r.getMessage()]
        assert len(reports) == 1, (name, reports)  # reported once, not once per epoch
    strict = load_config("colorization", [*TINY, "data.load_size=48", "data.strict=true"]).data
    with pytest.raises(ImageReadError, match="broken"):
        build_dataset(strict, folder, seed=0, log=log)


def _float_tiff(path, values):
    Image.fromarray(values.astype(np.float32), mode="F").save(path)
    return path


def test_float_images_scale_by_a_rule_outliers_cannot_defeat(tmp_path):
    """A float32 TIFF (a real photo's luma in [0, 1]) keeps its picture whatever else it holds."""
    luma = np.asarray(photo("coffee", 64).convert("L"), np.float64) / 255
    expected = np.round(luma * 255)
    plain = np.asarray(load_image(_float_tiff(tmp_path / "unit.tif", luma)))[:, :, 0]
    assert np.abs(plain - expected).max() <= 1
    # One huge pixel: the percentile stretch keeps the photo (correlation near 1), not a black frame.
    spiked = luma.copy()
    spiked[0, 0] = 1e30
    out = np.asarray(load_image(_float_tiff(tmp_path / "spike.tif", spiked)))[:, :, 0].astype(float)
    assert out.mean() > 40 and np.corrcoef(out[1:].ravel(), expected[1:].ravel())[0, 1] > 0.99


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_images_with_non_finite_pixels_are_refused(tmp_path, bad):
    luma = np.asarray(photo("coffee", 32).convert("L"), np.float64) / 255
    luma[3, 3] = bad
    with pytest.raises(ImageReadError, match=r"nan.tif|inf.tif") as e:
        load_image(_float_tiff(tmp_path / ("nan.tif" if np.isnan(bad) else "inf.tif"), luma))
    assert "1 NaN or infinite pixel(s)" in str(e.value)


def test_the_pixel_limit_is_ours_not_pillows(tmp_path):
    """Pillow's own guard (89.5 Mpx) would refuse a 9500 x 9500 image; our limit of 100 Mpx decides."""
    from img2img.data.images import MAX_PIXELS

    assert MAX_PIXELS == 100_000_000
    Image.new("L", (9500, 9500), 128).save(tmp_path / "big.png", compress_level=1)
    assert load_image(tmp_path / "big.png").size == (9500, 9500)
    with pytest.raises(ImageReadError, match="90.2 megapixels, over the limit of 90 megapixels"):
        load_image(tmp_path / "big.png", max_pixels=90_000_000)
