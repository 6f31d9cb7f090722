"""Tiling arithmetic (pure numpy): padding a side to the network's size rules, tile origins on
the network's stride grid, windows of the padded image without padding it whole, and blend
weights that sum to one at every pixel."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def ceil_to(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_amounts(length: int, multiple: int, min_size: int) -> tuple[int, int]:
    """(before, after) padding that takes length to a multiple >= min_size, split evenly."""
    total = ceil_to(max(length, min_size), multiple) - length
    return total // 2, total - total // 2


def reflect_pad(u8: np.ndarray, multiple: int, min_size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad HxWxC to a valid network size (both sides multiples of `multiple`, at least
    min_size); returns the padded array and (top, left), where the original starts."""
    ph = pad_amounts(u8.shape[0], multiple, min_size)
    pw = pad_amounts(u8.shape[1], multiple, min_size)
    if ph != (0, 0) or pw != (0, 0):
        u8 = np.pad(u8, (ph, pw, (0, 0)), mode="reflect")
    return u8, (ph[0], pw[0])


def reflect_index(positions: np.ndarray, length: int) -> np.ndarray:
    """Indices into an axis of `length` for positions of its reflect-padded extension, any
    distance outside [0, length): what np.pad(mode="reflect") copies there (mirrored about the
    end samples, which are not repeated; period 2 (length - 1))."""
    if length == 1:
        return np.zeros_like(positions)
    period = 2 * (length - 1)
    i = np.abs(positions) % period
    return np.where(i >= length, period - i, i)


def padded_window(u8: np.ndarray, top: int, left: int, y: int, x: int, height: int, width: int) -> np.ndarray:
    """The height x width window at (y, x) of u8 reflect-padded by (top, left) before: equal to
    np.pad(u8, ..., mode="reflect")[y : y + height, x : x + width], but only the window is built
    (padding a large image whole would copy all of it). A view when the window is inside u8."""
    y0, x0 = y - top, x - left
    if 0 <= y0 and y0 + height <= u8.shape[0] and 0 <= x0 and x0 + width <= u8.shape[1]:
        return u8[y0 : y0 + height, x0 : x0 + width]  # inside the image: a view
    rows = reflect_index(np.arange(y0, y0 + height), u8.shape[0])
    cols = reflect_index(np.arange(x0, x0 + width), u8.shape[1])
    # Two takes from the window's bounding box: several times faster than u8[np.ix_(rows, cols)].
    box = u8[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    return box.take(rows - rows.min(), axis=0).take(cols - cols.min(), axis=1)


@dataclass(frozen=True)
class TileGrid:
    """The tiles of one image: the image reflect-padded to height x width (it starts at (top,
    left) in there), tiles of tile_h x tile_w at rows ys and columns xs."""

    top: int
    left: int
    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: list[int]
    xs: list[int]

    @property
    def tiles(self) -> list[tuple[int, int]]:
        """(row index, column index) of every tile, row by row (the order tiling relies on)."""
        return [(i, j) for i in range(len(self.ys)) for j in range(len(self.xs))]


def tile_grid(h: int, w: int, tile: int, overlap: int, multiple: int, min_size: int) -> TileGrid:
    """Tiles for an h x w image: each axis padded to a multiple of `multiple` (at least
    min_size), tiles of `tile` (or the padded side, when smaller) on the stride grid."""
    ph, pw = pad_amounts(h, multiple, min_size), pad_amounts(w, multiple, min_size)
    hp, wp = h + sum(ph), w + sum(pw)
    th, tw = min(tile, hp), min(tile, wp)
    return TileGrid(ph[0], pw[0], hp, wp, th, tw, tile_starts(hp, th, overlap, multiple), tile_starts(wp, tw, overlap, multiple))


def tile_starts(length: int, tile: int, overlap: int, multiple: int = 1) -> list[int]:
    """Tile origins covering [0, length), spread evenly, each a multiple of `multiple` (length
    and tile are multiples of it too), the last tile ending at length. Neighbours overlap by at
    least `overlap` pixels, or as much as the stride grid allows when tile - overlap < multiple."""
    if length <= tile:
        return [0]
    max_step = max(tile - overlap, multiple)
    n = math.ceil((length - tile) / (tile - overlap)) + 1
    while True:
        starts = sorted({round(i * (length - tile) / (n - 1) / multiple) * multiple for i in range(n)})
        if all(b - a <= max_step for a, b in zip(starts, starts[1:])):
            return starts
        n += 1


def blend_weights(length: int, tile: int, starts: list[int], overlap: int) -> list[np.ndarray]:
    """1-D weights per tile that sum to 1 at every position.

    Each tile's raw weight rises as a raised cosine, w(i) = (1 - cos(pi (i + 0.5) / overlap)) / 2,
    over `overlap` pixels at edges shared with a neighbour (1 at the image border, where no
    neighbour exists), so seams fade smoothly; dividing by the sum over tiles normalizes. The
    2-D weight of a tile is the outer product of its row and column weights, and those sums
    factor too, so 2-D weights also sum to 1."""
    ramp = (1 - np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)) / 2
    raw = []
    for k, s in enumerate(starts):
        w = np.ones(min(tile, length), dtype=np.float64)
        if k > 0:
            w[:overlap] = ramp
        if k < len(starts) - 1:
            w[-overlap:] = np.minimum(w[-overlap:], ramp[::-1])
        raw.append((s, w))
    total = np.zeros(length, dtype=np.float64)
    for s, w in raw:
        total[s : s + len(w)] += w
    return [(w / total[s : s + len(w)]).astype(np.float32) for s, w in raw]
