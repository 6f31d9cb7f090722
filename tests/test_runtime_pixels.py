"""Pixels in and out of a model (img2img.runtime.pixels): the model's channels from any PIL
image, and colorization's luminance restore."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from PIL import Image
from skimage import data

from img2img import Img2ImgError
from img2img.runtime import prepare, restore_luminance, to_pil
from img2img.runtime.pixels import resize_to, shrink


def photo(name: str, size: tuple[int, int]) -> Image.Image:
    return Image.fromarray(getattr(data, name)()).resize(size, Image.Resampling.BICUBIC)


def test_prepare_gives_the_model_channels_and_to_pil_the_mode():
    rgb = photo("chelsea", (40, 30))
    grey = prepare(rgb, 1)
    assert grey.shape == (30, 40, 1) and np.array_equal(grey[:, :, 0], np.asarray(rgb.convert("L")))
    assert np.array_equal(prepare(rgb.convert("L"), 3), np.asarray(rgb.convert("L").convert("RGB")))
    assert to_pil(grey).mode == "L" and to_pil(prepare(rgb, 3)).mode == "RGB"
    with pytest.raises(Img2ImgError, match="4-channel input"):
        prepare(rgb, 4)


def test_restore_luminance_keeps_chroma():
    """On a real photo: its own luma gives it back; another luma keeps its Cb and Cr."""
    rgb = np.asarray(photo("coffee", (64, 48)))
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    assert np.abs(restore_luminance(grey, rgb).astype(int) - rgb).max() <= 1
    other = np.asarray(photo("astronaut", (64, 48)).convert("L"))
    out = restore_luminance(other, rgb)

    def cbcr(a: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(a).convert("YCbCr"), dtype=int)[:, :, 1:]

    assert np.abs(np.asarray(Image.fromarray(out).convert("L")).astype(int) - other).max() <= 1  # luma: exact
    # Chroma: the same where it fits the gamut; elsewhere scaled down, keeping the hue angle.
    d_out, d_in = cbcr(out) - 128, cbcr(rgb) - 128
    fits = np.abs(d_out - d_in).max(axis=2) <= 2
    assert fits.mean() > 0.5
    strong = ~fits & (np.hypot(*d_in.transpose(2, 0, 1)) > 10) & (np.hypot(*d_out.transpose(2, 0, 1)) > 5)
    angle = lambda d: np.arctan2(d[..., 1], d[..., 0])  # noqa: E731
    assert np.abs(np.angle(np.exp(1j * (angle(d_out[strong]) - angle(d_in[strong]))))).mean() < 0.15



def test_shrink_to_a_short_side_and_resize_back():
    rgb = np.asarray(photo("chelsea", (90, 60)))
    small = shrink(rgb, 30)
    assert small.shape == (30, 45, 3)
    assert np.abs(small.astype(int) - np.asarray(photo("chelsea", (45, 30)))).mean() < 4  # the same picture
    assert shrink(rgb, 60) is rgb and shrink(rgb, 100) is rgb  # short side already at most 60
    assert shrink(rgb[:, :, :1], 30).shape == (30, 45, 1)  # grey keeps its channel axis
    assert resize_to(small, 60, 90).shape == (60, 90, 3) and resize_to(rgb, 60, 90) is rgb


def traced_peak(fn):
    """(fn(), the peak of memory traced while it ran): numpy and Pillow report to tracemalloc."""
    tracemalloc.start()
    try:
        return fn(), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_restore_luminance_works_in_strips():
    """Large images get their luma back strip by strip: the same result as one pass, with
    memory of one output and a strip (one pass needs about 50 bytes a pixel in floats)."""
    rgb = np.asarray(photo("coffee", (400, 6000)))
    grey = np.asarray(photo("astronaut", (400, 6000)).convert("L"))
    one_pass = restore_luminance(grey, rgb, rows=rgb.shape[0])
    out, peak = traced_peak(lambda: restore_luminance(grey, rgb))
    assert np.array_equal(out, one_pass)
    assert peak < 3 * rgb.nbytes, f"{peak / rgb.nbytes:.1f}x the image"


def test_prepare_makes_one_copy():
    """np.asarray(PIL image) holds two copies for a moment (Pillow's tobytes); prepare not."""
    img = photo("chelsea", (1000, 4000))
    a, peak = traced_peak(lambda: prepare(img, 3))
    assert np.array_equal(a, np.asarray(img)) and a.shape == (4000, 1000, 3)
    assert peak < 1.3 * a.nbytes, f"{peak / a.nbytes:.1f}x the image"
    assert np.array_equal(prepare(img, 1)[:, :, 0], np.asarray(img.convert("L")))
