"""Reading images robustly: any common format and mode becomes 8-bit RGB (or L)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from img2img import Img2ImgError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"}
# Decompression-bomb guard: refuse anything above this many pixels (a 16k x 16k photo).
MAX_PIXELS = 16384 * 16384


class ImageReadError(Img2ImgError):
    """An image file that cannot be decoded: corrupt, truncated, not an image, or too large."""


def list_images(folder: Path) -> list[Path]:
    """Image files under folder (recursive), sorted, by extension."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB: transparency is composited on white, 16-bit and float
    images are rescaled to 8 bits, CMYK and palette go through PIL's converters."""
    if img.mode.startswith("I") or img.mode == "F":
        # 16-bit (and 32-bit int holding 16-bit data) -> /257; float in [0, 1] -> *255.
        a = np.asarray(img, dtype=np.float64)
        if img.mode.startswith("I;16") or a.max() > 255:
            a = a / 257.0
        elif img.mode == "F" and a.max() <= 1.0:
            a = a * 255.0
        img = Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.getchannel("A"))
        return background
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(path: Path | str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open an image file as RGB, honouring EXIF orientation. Raises ImageReadError naming the
    file and the reason when it cannot be used."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if img.width * img.height > max_pixels:
                    raise ImageReadError(
                        f"{path}: {img.width}x{img.height} has more than {max_pixels} pixels; downscale it first"
                    )
                img.load()
                img = ImageOps.exif_transpose(img)
                return to_rgb(img)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        reason = "not an image or an unsupported format" if "cannot identify" in str(e) else str(e) or type(e).__name__
        raise ImageReadError(f"{path}: cannot read image ({reason}); replace or remove the file") from None
