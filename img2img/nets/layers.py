"""Building blocks shared by the generators and discriminators."""

from __future__ import annotations

import torch
from torch import nn

NORMS = ("instance", "batch", "none")
UPSAMPLE_MODES = ("nearest", "bilinear")


def norm_layer(kind: str, channels: int) -> nn.Module:
    """Normalization by name. Instance norm has no affine parameters and no running stats,
    as in the CycleGAN reference code, so train and eval behave the same."""
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {', '.join(NORMS)}")


class UpConv(nn.Sequential):
    """2x upsampling as resize + 3x3 convolution.

    Transposed convolutions overlap unevenly when kernel size is not divisible by stride
    and leave checkerboard artifacts (Odena et al., Distill 2016); a resize followed by a
    convolution cannot.
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest", bias: bool = True):
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsample mode {mode!r}; choose one of {', '.join(UPSAMPLE_MODES)}")
        super().__init__(
            nn.Upsample(scale_factor=2, mode=mode, **({} if mode == "nearest" else {"align_corners": False})),
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, bias=bias),
        )


def check_size(x: torch.Tensor, multiple: int, name: str) -> None:
    """Raise a clear error when H or W is not a multiple of the network's total stride.

    Skipped while exporting, where H and W are symbolic; the runtime pads instead."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return
    h, w = x.shape[-2:]
    if h % multiple or w % multiple:
        raise ValueError(
            f"{name} needs height and width that are multiples of {multiple}, got {h}x{w}; "
            f"pad the image (img2img.runtime pads with reflection and crops back)"
        )


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """N(0, 0.02) init for conv weights and N(1, 0.02) for norm scales (pix2pix/CycleGAN)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            # Under spectral norm the raw weight lives in parametrizations.weight.original.
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
