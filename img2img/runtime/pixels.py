"""Pixels in and out of a model (numpy and Pillow only): a PIL image as the model's channels,
a uint8 array back to PIL, and colorization's luminance restore. The [-1, 1] scaling itself is
img2img.io.to_unit / from_unit."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from img2img import Img2ImgError
from img2img.data.images import to_rgb


STRIP_ROWS = 256  # large images are converted this many rows at a time: temporaries stay one strip


def prepare(img: Image.Image, channels: int) -> np.ndarray:
    """PIL image -> HxWxC uint8 with the model's channels: EXIF orientation applied, alpha
    composited on white, 16-bit scaled; grey (ITU-R BT.601 luma, PIL's "L") for 1-channel models."""
    if img.getexif().get(0x0112, 1) != 1:  # EXIF orientation tag
        img = ImageOps.exif_transpose(img)
    img = to_rgb(img)
    if channels == 1:
        img = img.convert("L")
    elif channels != 3:
        raise Img2ImgError(f"the model takes {channels}-channel input; only 1 (grey) and 3 (RGB) are supported")
    return to_array(img)


def to_array(img: Image.Image, rows: int = STRIP_ROWS) -> np.ndarray:
    """An L or RGB image -> HxWxC uint8. np.asarray(img) goes through img.tobytes(), which joins
    encoded chunks: two copies of the image for a moment (265 MB extra for 9400^2 RGB). Copied
    `rows` rows at a time instead, the extra is one strip."""
    w, h = img.size
    out = np.empty((h, w, len(img.getbands())), dtype=np.uint8)
    for r in range(0, h, rows):
        strip = np.asarray(img.crop((0, r, w, min(h, r + rows))), dtype=np.uint8)
        out[r : r + rows] = strip[:, :, None] if strip.ndim == 2 else strip
    return out


def to_pil(u8: np.ndarray) -> Image.Image:
    """HxWx1 -> mode L, HxWx3 -> RGB (uint8 arrays: PIL infers the mode)."""
    return Image.fromarray(np.ascontiguousarray(u8[:, :, 0] if u8.shape[2] == 1 else u8[:, :, :3]))


def shrink(u8: np.ndarray, side: int) -> np.ndarray:
    """HxWxC uint8 whose short side is above `side`: downscaled (antialiased bicubic) to that
    short side, aspect kept; otherwise returned as is."""
    h, w = u8.shape[:2]
    if min(h, w) <= side:
        return u8
    k = side / min(h, w)
    return to_array(to_pil(u8).resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BICUBIC))


def resize_to(u8: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxWxC uint8 -> height x width x C (bicubic); the array itself when the size is right."""
    if u8.shape[:2] == (height, width):
        return u8
    return to_array(to_pil(u8).resize((width, height), Image.Resampling.BICUBIC))


def mirror_mean(u8: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """The mean of an HxWxC uint8 output and the output for the mirror image (left-right), the
    latter flipped back: the test-time flip average (rounded half up)."""
    return ((u8.astype(np.uint16) + mirrored[:, ::-1] + 1) >> 1).astype(np.uint8)


def colour_under(grey: np.ndarray, colours: np.ndarray) -> np.ndarray:
    """Colorization's result: the network's colours (HxWx3 uint8, any size) enlarged to the HxW
    grey input's size and put under its luma (restore_luminance)."""
    return restore_luminance(grey, resize_to(colours, *grey.shape[:2]))


def restore_luminance(grey: np.ndarray, rgb: np.ndarray, rows: int = STRIP_ROWS) -> np.ndarray:
    """Give a colorized HxWx3 uint8 image exactly the input's BT.601 luma, keeping its hue.

    With Y = 0.299 R + 0.587 G + 0.114 B (weights summing to 1) and chroma c = RGB - Y, the
    result is grey + s * c: its luma is grey, and B - Y, R - Y (hence Cb, Cr) are those of the
    network's colours scaled by s. s = 1 unless a channel would leave [0, 255]; then s is the
    largest value that stays inside (less saturation, same hue), so nothing is clipped. The
    network only has to get the colours right; the detail of the grey photo is kept as it is
    (as in colorization methods that predict chroma given L, e.g. Zhang et al. 2016).

    Computed `rows` rows at a time: the float arithmetic needs about 50 bytes a pixel, which
    for a whole large image would be gigabytes."""
    out = np.empty_like(rgb)
    for r in range(0, rgb.shape[0], rows):
        c = rgb[r : r + rows].astype(np.float32)
        c -= (c @ np.array([0.299, 0.587, 0.114], np.float32))[:, :, None]
        y = grey[r : r + rows].astype(np.float32)[:, :, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(c > 0, (255 - y) / c, np.where(c < 0, -y / c, np.inf))
        s = np.minimum(1.0, room.min(axis=2, keepdims=True))
        out[r : r + rows] = np.clip(y + s * c + 0.5, 0, 255).astype(np.uint8)
    return out
