"""Training methods behind one interface (methods.base.Method), built by build_method()."""

from __future__ import annotations

import torch

from img2img.config import RunConfig
from img2img.methods.base import Method
from img2img.methods.common import Amp, Wrap, identity
from img2img.methods.cyclegan import CycleGAN
from img2img.methods.pix2pix import Pix2Pix

# Users pick a method by name (config key `method`).
METHODS: dict[str, type[Pix2Pix] | type[CycleGAN]] = {"pix2pix": Pix2Pix, "cyclegan": CycleGAN}


def build_method(cfg: RunConfig, device: torch.device, amp: Amp, total_steps: int, decay_start: int,
                 wrap: Wrap = identity, seed: int = 0) -> Method:
    """The method cfg names, with the nets it describes on `device`, each passed through `wrap`
    (DDP under torchrun); total_steps and decay_start set the learning-rate schedule."""
    return METHODS[cfg.method].from_config(cfg, device, amp, total_steps, decay_start, wrap=wrap, seed=seed)


__all__ = ["METHODS", "CycleGAN", "Method", "Pix2Pix", "build_method"]
