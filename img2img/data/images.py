"""Reading images robustly: any common format and mode becomes 8-bit RGB.

What load_image guarantees, whatever the file holds:
- EXIF orientation (JPEG, WebP, PNG, TIFF) is applied, so the pixels are upright;
- grey, 1-bit, palette, CMYK, Lab and YCbCr go through PIL's converters to RGB;
- transparency (an alpha channel, a palette's transparent entries, or a grey/RGB PNG's tRNS
  colour) is composited on white;
- 16-bit and 32-bit integer images are scaled by 255/65535; float images by a rule that single
  outliers cannot defeat (see _float_to_8bit); NaN or infinite pixels are refused;
- images above MAX_PIXELS are refused from their header, before anything is decoded;
- a file that cannot be decoded (corrupt, truncated, not an image, too large) raises
  ImageReadError, whose message starts with the path.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from img2img import Img2ImgError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
# Decompression-bomb guard: refuse anything above this many pixels (100 Mpx, e.g. 10000 x 10000),
# checked from the header. It replaces Pillow's own warning at 89.5 Mpx; Pillow's hard error at
# 179 Mpx stays above it. The web UI sets a lower limit of its own.
MAX_PIXELS = 100_000_000


class ImageReadError(Img2ImgError):
    """An image file that cannot be decoded: corrupt, truncated, not an image, or too large."""

    def __init__(self, message: str, path: Path | str | None = None):
        super().__init__(message)
        self.path = str(path) if path is not None else None


def list_images(folder: Path) -> list[Path]:
    """Image files under folder (recursive), sorted, by extension. Hidden files and folders
    (.git, .ipynb_checkpoints, the .img2img-cache of derived sketches) are left out."""
    folder = Path(folder)
    return sorted(
        p for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


def _float_to_8bit(a: np.ndarray) -> np.ndarray:
    """A float image's values -> 0..255. In [0, 1]: x 255; in [0, 255]: as is; any other range:
    the 0.1 and 99.9 percentiles are stretched to 0 and 255 (clipped), so one pixel of 1e30 cannot
    turn the picture black. NaN and infinity have no meaning as a colour: refused."""
    if not np.isfinite(a).all():
        bad = int(a.size - np.isfinite(a).sum())
        raise ValueError(f"the float image holds {bad} NaN or infinite pixel(s); save it with finite values")
    lo, hi = float(a.min(initial=0.0)), float(a.max(initial=0.0))
    if lo >= 0 and hi <= 1:
        return a * 255.0
    if lo >= 0 and hi <= 255:
        return a
    p_lo, p_hi = np.percentile(a, [0.1, 99.9])
    return (a - p_lo) * (255.0 / max(p_hi - p_lo, 1e-12))


def _to_8bit(img: Image.Image) -> Image.Image:
    """Integer modes deeper than 8 bits ("I;16*", "I") -> "L" by x * 255 / 65535; "F" by
    _float_to_8bit."""
    a = np.asarray(img, dtype=np.float64)
    a = _float_to_8bit(a) if img.mode == "F" else a * (255.0 / 65535.0)
    return Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L")


def _transparency_mask(img: Image.Image) -> Image.Image | None:
    """Alpha ("L", 255 = opaque) from a tRNS colour on a grey, 16-bit or RGB image, else None.
    (Palette transparency is handled by PIL's P -> RGBA conversion.)"""
    key = img.info.get("transparency")
    if key is None or img.mode not in ("1", "L", "I", "I;16", "I;16B", "I;16L", "RGB"):
        return None
    a = np.asarray(img)
    if img.mode == "RGB":
        if not (isinstance(key, tuple) and len(key) == 3):
            return None
        transparent = (a == np.asarray(key, dtype=a.dtype)).all(axis=-1)
    else:
        if not isinstance(key, int):
            return None
        transparent = (a.astype(np.int64) * (255 if img.mode == "1" else 1)) == key
    return Image.fromarray(np.where(transparent, 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: transparency is composited on white, 16-bit and float
    images are rescaled to 8 bits, CMYK, Lab and palette go through PIL's converters."""
    alpha = _transparency_mask(img)
    if img.mode.startswith("I") or img.mode == "F":
        img = _to_8bit(img)
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # applies the palette's transparent entries, if any
    if img.mode in ("LA", "La"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        alpha = img.getchannel("A")
    if img.mode != "RGB":
        img = img.convert("RGB")
    if alpha is None:
        return img
    background = Image.new("RGB", img.size, (255, 255, 255))
    background.paste(img, mask=alpha)
    return background


def load_image(path: Path | str, max_pixels: int = MAX_PIXELS, data: bytes | None = None,
               draft: tuple[int, int] | None = None) -> Image.Image:
    """Open an image file as RGB, honouring EXIF orientation. Raises ImageReadError naming the
    file and the reason when it cannot be used.

    data: the file's bytes when the caller has already read them (e.g. to hash them); path then
    only names the file in errors. draft: (w, h) the caller will shrink the image to anyway; a
    JPEG is then decoded at the smallest DCT scale (1/2, 1/4 or 1/8) that keeps it at least
    that large in both dimensions, much faster for large photos. Other formats ignore it."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Our own limit, checked below from the header, replaces Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data) if data is not None else path) as img:
                if img.width * img.height > max_pixels:
                    raise ImageReadError(
                        f"{path}: {img.width}x{img.height} is {img.width * img.height / 1e6:.3g} megapixels, over the "
                        f"limit of {max_pixels / 1e6:g} megapixels; downscale it first", path
                    )
                if draft is not None and img.format == "JPEG":
                    # Orientation 5-8 swap width and height: ask for the larger side in both.
                    side = max(draft)
                    img.draft(img.mode, (side, side) if img.getexif().get(0x0112, 1) >= 5 else draft)
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found", path) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        reason = "not an image or an unsupported format" if "cannot identify" in str(e) else str(e) or type(e).__name__
        raise ImageReadError(f"{path}: cannot read image ({reason}); replace or remove the file", path) from None
