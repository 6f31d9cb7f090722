"""Shared fixtures: real photos (scikit-image ships them) at tiny sizes, and tiny configs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

# Overrides that make any preset tiny: 32 px crops, 8-wide nets, few layers, no workers.
TINY = [
    "data.load_size=40", "data.crop_size=32", "data.num_workers=0",
    "model.ngf=8", "model.ndf=8", "model.n_blocks=1", "model.num_downs=5", "model.n_layers_d=2",
    "train.log_every=1", "train.sample_every=2", "train.checkpoint_every=2",
]


def real_photos() -> dict[str, np.ndarray]:
    """Colour photos bundled in the scikit-image wheel (no download)."""
    from skimage import data

    return {
        "astronaut": data.astronaut(),
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
        "motorcycle": data.stereo_motorcycle()[0],
    }


def photo(name: str, size: int) -> Image.Image:
    return Image.fromarray(real_photos()[name]).convert("RGB").resize((size, size), Image.BICUBIC)


@pytest.fixture(scope="session")
def log() -> logging.Logger:
    return logging.getLogger("img2img.tests")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """One folder with every layout training reads, built from real photos at 48 px:
    train/AB (grey|colour side by side), train/A + train/B, trainA/ + trainB/, photos/."""
    root = tmp_path_factory.mktemp("data")
    for sub in ("paired/train/AB", "paired_ab/train/A", "paired_ab/train/B", "unpaired/trainA", "unpaired/trainB", "photos"):
        (root / sub).mkdir(parents=True)
    for i, name in enumerate(real_photos()):
        img = photo(name, 48)
        grey = img.convert("L").convert("RGB")
        ab = Image.new("RGB", (96, 48))
        ab.paste(grey, (0, 0))
        ab.paste(img, (48, 0))
        ab.save(root / "paired/train/AB" / f"{name}.jpg", quality=95)
        grey.save(root / "paired_ab/train/A" / f"{name}.png")
        img.save(root / "paired_ab/train/B" / f"{name}.png")
        img.save(root / ("unpaired/trainA" if i < 3 else "unpaired/trainB") / f"{name}.jpg", quality=95)
        img.save(root / "photos" / f"{name}.png")
    return root
