"""PatchGAN discriminators with spectral normalization."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from img2img.nets.layers import init_weights, norm_layer


class PatchDiscriminator(nn.Module):
    """PatchGAN (Isola et al. 2017): a conv net whose output map scores overlapping patches.
    n_layers=3 gives the 70x70 receptive field. Every conv is spectrally normalized
    (Miyato et al. 2018, one power iteration per forward in training) when spectral=True."""

    def __init__(
        self,
        in_channels: int = 3,    # channels judged (pix2pix: input + output concatenated)
        ndf: int = 64,           # width of the first conv; doubles per layer up to ndf*8
        n_layers: int = 3,       # stride-2 layers; 3 -> 70x70 patches
        norm: str = "none",      # none (usual with spectral norm) | instance | batch
        spectral: bool = True,   # spectral normalization on every conv
    ):
        super().__init__()
        sn = spectral_norm if spectral else (lambda m: m)
        layers: list[nn.Module] = [sn(nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1)), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, n_layers + 1):
            nxt = ndf * min(2**i, 8)
            stride = 2 if i < n_layers else 1
            layers += [sn(nn.Conv2d(ch, nxt, 4, stride=stride, padding=1)), norm_layer(norm, nxt), nn.LeakyReLU(0.2, True)]
            ch = nxt
        layers.append(sn(nn.Conv2d(ch, 1, 4, stride=1, padding=1)))
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activation after every LeakyReLU, then the patch logits (last): for feature matching."""
        out = []
        for layer in self.model:
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                out.append(x)
        out.append(x)
        return out


class MultiScaleDiscriminator(nn.Module):
    """num_scales PatchGANs on the input downsampled by 2**k (Wang et al. 2018, pix2pixHD).
    Returns a list of patch maps, finest first; num_scales=1 is a plain PatchGAN."""

    def __init__(
        self,
        in_channels: int = 3,
        ndf: int = 64,
        n_layers: int = 3,
        norm: str = "none",
        spectral: bool = True,
        num_scales: int = 1,     # how many resolutions are judged
    ):
        super().__init__()
        self.nets = nn.ModuleList(PatchDiscriminator(in_channels, ndf, n_layers, norm, spectral) for _ in range(num_scales))
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [net(xi) for net, xi in zip(self.nets, self._pyramid(x))]

    def features(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """Per scale: every hidden activation, then the patch logits (last)."""
        return [net.features(xi) for net, xi in zip(self.nets, self._pyramid(x))]

    def _pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        xs = [x]
        for _ in self.nets[1:]:
            xs.append(self.down(xs[-1]))
        return xs
