"""Tiling arithmetic (img2img.runtime.tiling): padding to the size rules, tile origins on the
stride grid, blend weights that sum to one."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from img2img.runtime import blend_weights, pad_amounts, reflect_pad, tile_starts
from img2img.runtime.tiling import padded_window


@pytest.mark.parametrize("length,multiple,min_size", [(37, 4, 8), (5, 4, 8), (64, 16, 16), (1, 32, 32), (300, 32, 32)])
def test_padding_reaches_the_size_rules_split_evenly(length, multiple, min_size):
    before, after = pad_amounts(length, multiple, min_size)
    total = length + before + after
    assert total % multiple == 0 and total >= min_size and total - multiple < max(length, min_size)
    assert 0 <= after - before <= 1


def test_reflect_pad_keeps_the_image_at_top_left_offset():
    rgb = data.coffee()[:37, :53]
    padded, (top, left) = reflect_pad(rgb, 4, 8)
    assert padded.shape == (40, 56, 3) and (top, left) == (1, 1)
    assert np.array_equal(padded[top : top + 37, left : left + 53], rgb)
    assert np.array_equal(padded[0], rgb[1, np.r_[1, 0:53, 51, 50]])  # reflection, not edge copies
    same, offset = reflect_pad(rgb[:32, :48], 4, 8)
    assert offset == (0, 0) and np.array_equal(same, rgb[:32, :48])


@pytest.mark.parametrize(
    "length,tile,overlap,multiple",
    [(600, 256, 64, 4), (608, 256, 64, 16), (1000, 128, 32, 8), (100, 128, 32, 4), (4096, 1024, 256, 256), (2560, 512, 128, 256)],
)
def test_tiles_cover_align_and_blend_to_one(length, tile, overlap, multiple):
    starts = tile_starts(length, tile, overlap, multiple)
    t = min(tile, length)
    assert starts[0] == 0 and starts[-1] + t == length
    assert all(s % multiple == 0 for s in starts)
    assert all(b - a <= max(t - overlap, multiple) for a, b in zip(starts, starts[1:]))  # overlap kept
    weights = blend_weights(length, t, starts, overlap)
    total = np.zeros(length)
    for s, w in zip(starts, weights):
        assert w.min() > 0
        total[s : s + t] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("multiple,min_size", [(4, 8), (16, 16), (32, 128)])  # 128: pads larger than the image
def test_padded_window_is_a_window_of_the_padded_image(multiple, min_size):
    """Tiles are cut from the reflect-padded image without padding it whole; each window must
    equal the slice of np.pad's image, at the borders, inside, and where the reflection wraps."""
    rgb = data.coffee()[:37, :53]
    padded, (top, left) = reflect_pad(rgb, multiple, min_size)
    hp, wp = padded.shape[:2]
    for y, x, h, w in [(0, 0, hp, wp), (0, 0, 8, 8), (hp - 8, wp - 8, 8, 8), (top, left, 37, 53), (4, 8, hp - 4, 16)]:
        window = padded_window(rgb, top, left, y, x, h, w)
        assert np.array_equal(window, padded[y : y + h, x : x + w]), (y, x, h, w)
    assert np.shares_memory(padded_window(rgb, top, left, top + 1, left + 2, 8, 8), rgb)  # inside: a view
