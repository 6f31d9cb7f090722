"""Augmentation pipelines (albumentations 2.0.8, MIT): resize -> random crop -> flip -> colour jitter.

Paired data: one Compose with additional_targets={"target": "image"}, so A and B receive the
same random crop, flip and jitter parameters and stay pixel-aligned. Unpaired data: the same
pipeline applied to A and B separately, with independent random parameters.

Colour jitter (data.color_jitter = s > 0): brightness, contrast and saturation factors drawn
from [1 - s, 1 + s] and a hue shift from [-s/4, s/4] of a full turn, in random order, on
every sample. On paired data it is applied identically to A and B, which is right when both
sides are photos (day/night, maps) but not for label maps (facades, cityscapes): keep it at 0
there. Derived pairs (colorization, sketch) jitter only the photo B, see datasets.py.
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # else it calls PyPI on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from img2img.config import DataConfig  # noqa: E402
from img2img.io import from_unit, to_unit  # noqa: E402

PAIRED_TARGETS = {"target": "image"}


def resize_steps(cfg: DataConfig) -> list[A.BasicTransform]:
    """Deterministic resize to load_size x load_size (preprocess=resize_and_crop), else nothing.
    Bicubic when enlarging; area averaging when shrinking (no aliasing from large photos)."""
    if cfg.preprocess != "resize_and_crop":
        return []
    return [A.Resize(cfg.load_size, cfg.load_size, interpolation=cv2.INTER_CUBIC, area_for_downscale="image")]


def geometric_steps(cfg: DataConfig) -> list[A.BasicTransform]:
    """Random crop to crop_size (scale_crop: of a random area, resized), then a random
    horizontal flip (data.flip)."""
    size = cfg.crop_size
    crop = (
        A.RandomResizedCrop((size, size), scale=(cfg.min_crop_scale, cfg.max_crop_scale), interpolation=cv2.INTER_CUBIC, area_for_downscale="image")
        if cfg.preprocess == "scale_crop" else A.RandomCrop(size, size)
    )  # fmt: skip
    steps: list[A.BasicTransform] = [crop]
    if cfg.flip:
        steps.append(A.HorizontalFlip(p=0.5))
    return steps


def jitter_steps(cfg: DataConfig) -> list[A.BasicTransform]:
    s = cfg.color_jitter
    if s <= 0:
        return []
    return [A.ColorJitter(brightness=(1 - s, 1 + s), contrast=(1 - s, 1 + s), saturation=(1 - s, 1 + s),
                          hue=(-s / 4, s / 4), p=1.0)]


def build_transform(cfg: DataConfig, paired: bool) -> A.Compose:
    """resize -> random crop -> flip -> colour jitter. With paired=True the same random
    parameters are applied to `image` and `target` (additional_targets), so A and B stay aligned."""
    steps = resize_steps(cfg) + geometric_steps(cfg) + jitter_steps(cfg)
    return A.Compose(steps, additional_targets=PAIRED_TARGETS if paired else None)


def compose(steps: list[A.BasicTransform], paired: bool = False) -> A.Compose | None:
    """A Compose of steps, or None when there are none (callers then skip the stage)."""
    return A.Compose(steps, additional_targets=PAIRED_TARGETS if paired else None) if steps else None


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC uint8 -> CxHxW float in [-1, 1] (io.to_unit, in numpy: tiny torch ops in a
    process whose OpenMP threads also train can take 10x longer than the arithmetic)."""
    return torch.from_numpy(to_unit(img))


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """CxHxW in [-1, 1] -> HxWxC uint8 (inverse of to_tensor)."""
    return from_unit(t.detach().float().cpu().numpy())
