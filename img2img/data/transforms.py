"""Augmentation pipelines (albumentations 2.0.8, MIT)."""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # else it calls PyPI on import

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from img2img.config import DataConfig  # noqa: E402


def build_transform(cfg: DataConfig, paired: bool) -> A.Compose:
    """resize -> random crop -> flip. With paired=True the same random parameters are applied
    to `image` and `target` (additional_targets), so A and B stay pixel-aligned."""
    steps: list[A.BasicTransform] = []
    if cfg.preprocess == "resize_and_crop":
        steps.append(A.Resize(cfg.load_size, cfg.load_size, interpolation=cv2.INTER_CUBIC))
    steps.append(A.RandomCrop(cfg.crop_size, cfg.crop_size))
    if cfg.flip:
        steps.append(A.HorizontalFlip(p=0.5))
    return A.Compose(steps, additional_targets={"target": "image"} if paired else None)


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """HxW or HxWxC uint8 -> CxHxW float in [-1, 1] (x / 127.5 - 1)."""
    if img.ndim == 2:
        img = img[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """CxHxW in [-1, 1] -> HxWxC uint8 (inverse of to_tensor)."""
    return ((t.detach().float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
