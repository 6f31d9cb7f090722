"""Generators: ResNet (CycleGAN) and U-Net (pix2pix). Both upsample by resize + conv.

Each generator class owns its shape rules (size_rules: the multiple H and W must be of, and the
smallest side it accepts) and records its constructor arguments as a GeneratorSpec, which is
what checkpoints store and what the runtime and the config validation read. Adding a generator
is one class (with `arch`, `size_rules` and `self.spec = GeneratorSpec.capture(...)`) plus one
line in GENERATORS.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from img2img.nets.layers import UpConv, check_size, init_weights, norm_layer


class ResnetBlock(nn.Module):
    """x + F(x), F = pad-conv-norm-relu-(dropout)-pad-conv-norm (He et al. 2016)."""

    def __init__(self, channels: int, norm: str, dropout: float):
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3, bias=norm != "batch"),
            norm_layer(norm, channels),
            nn.ReLU(True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3, bias=norm != "batch"), norm_layer(norm, channels)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


@dataclass(frozen=True)
class GeneratorSpec:
    """A generator's registry name and constructor arguments: enough to rebuild it."""

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def capture(cls, net: nn.Module, args: dict[str, Any]) -> "GeneratorSpec":
        """The spec of `net` from its constructor's locals(): every constructor parameter."""
        params = inspect.signature(type(net).__init__).parameters
        return cls(type(net).arch, {k: args[k] for k in params if k != "self"})

    def build(self) -> nn.Module:
        return generator_class(self.arch)(**self.kwargs)

    @property
    def size_rules(self) -> tuple[int, int]:
        """(multiple, min_size): H and W must be multiples of `multiple` and at least `min_size`."""
        return generator_class(self.arch).size_rules(**self.kwargs)

    @property
    def size_multiple(self) -> int:
        return self.size_rules[0]

    @property
    def min_size(self) -> int:
        return self.size_rules[1]

    def to_json(self) -> str:
        return json.dumps({"arch": self.arch, "kwargs": self.kwargs})

    @classmethod
    def from_json(cls, text: str) -> "GeneratorSpec":
        d = json.loads(text)
        return cls(d["arch"], d.get("kwargs", {}))


class ResnetGenerator(nn.Module):
    """Johnson et al. 2016 style generator used by CycleGAN: c7s1-ngf, two stride-2 downsamplings,
    n residual blocks at 1/4 resolution, two resize+conv upsamplings, c7s1-out, tanh."""

    arch = "resnet"

    @staticmethod
    def size_rules(**kwargs: Any) -> tuple[int, int]:
        """Total stride 4; the residual blocks reflect-pad by 1 at 1/4 scale, so H/4 >= 2."""
        return 4, 8

    def __init__(
        self,
        in_channels: int = 3,       # image channels in (1 for grey / sketch input)
        out_channels: int = 3,      # image channels out
        ngf: int = 64,              # width of the first conv; doubles at each downsampling
        n_blocks: int = 9,          # residual blocks at the bottleneck (9 for 256 px, 6 for 128 px)
        norm: str = "instance",     # instance | batch | none
        dropout: float = 0.0,       # dropout inside residual blocks
        upsample: str = "nearest",  # nearest | bilinear resize before each up conv
    ):
        super().__init__()
        self.spec = GeneratorSpec.capture(self, locals())
        self.size_multiple, self.min_size = self.size_rules()
        bias = norm != "batch"  # batch norm has its own shift
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7, bias=bias),
            norm_layer(norm, ngf),
            nn.ReLU(True),
        ]
        ch = ngf
        for _ in range(2):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1, bias=bias), norm_layer(norm, ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch, norm, dropout) for _ in range(n_blocks)]
        for _ in range(2):
            layers += [UpConv(ch, ch // 2, upsample, bias=bias), norm_layer(norm, ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_size(x, self.size_multiple, type(self).__name__)
        return self.model(x)


class UnetGenerator(nn.Module):
    """U-Net of pix2pix (Isola et al. 2017): num_downs stride-2 4x4 convs, then mirrored
    resize+conv ups with skip connections. num_downs=8 is U-Net-256 (bottleneck 1x1 at 256 px).

    Encoder i: [LeakyReLU(0.2)] conv4x4/2 [norm]; the outermost has no activation or norm and
    the innermost no norm. Decoder i: ReLU, up conv, norm (dropout on the middle ngf*8 levels).
    """

    arch = "unet"

    @staticmethod
    def size_rules(num_downs: int = 8, **kwargs: Any) -> tuple[int, int]:
        """Each level halves H and W and the skips must line up: multiples of 2**num_downs."""
        return 2**num_downs, 2**num_downs

    def __init__(
        self,
        in_channels: int = 3,       # image channels in
        out_channels: int = 3,      # image channels out
        num_downs: int = 8,         # downsamplings; input sides must be multiples of 2**num_downs
        ngf: int = 64,              # width of the outermost layer; doubles per level up to ngf*8
        norm: str = "batch",        # batch | instance | none
        dropout: float = 0.5,       # dropout in the ngf*8 decoder levels (pix2pix's noise source)
        upsample: str = "nearest",  # nearest | bilinear
    ):
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"UnetGenerator needs num_downs >= 2, got {num_downs}")
        self.spec = GeneratorSpec.capture(self, locals())
        self.size_multiple, self.min_size = self.size_rules(num_downs)
        bias = norm != "batch"
        widths = [min(ngf * 2**i, ngf * 8) for i in range(num_downs)]  # encoder output widths
        self.downs = nn.ModuleList()
        prev = in_channels
        for i, w in enumerate(widths):
            layers: list[nn.Module] = [] if i == 0 else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(prev, w, 4, stride=2, padding=1, bias=bias or i == 0))
            if 0 < i < num_downs - 1:
                layers.append(norm_layer(norm, w))
            self.downs.append(nn.Sequential(*layers))
            prev = w
        self.ups = nn.ModuleList()
        for i in reversed(range(num_downs)):
            # Decoder level i takes the innermost features (i == last) or decoder output + skip.
            c_in = widths[i] if i == num_downs - 1 else widths[i] * 2
            if i == 0:
                self.ups.append(nn.Sequential(nn.ReLU(True), UpConv(c_in, out_channels, upsample), nn.Tanh()))
                continue
            c_out = widths[i - 1]
            layers = [nn.ReLU(True), UpConv(c_in, c_out, upsample, bias=bias), norm_layer(norm, c_out)]
            # pix2pix puts dropout on the ngf*8 levels below the innermost one.
            if dropout > 0 and i < num_downs - 1 and widths[i] == ngf * 8 and i >= num_downs - 4:
                layers.append(nn.Dropout(dropout))
            self.ups.append(nn.Sequential(*layers))
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_size(x, self.size_multiple, type(self).__name__)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()  # the innermost output feeds the first decoder directly
        for up in self.ups:
            x = up(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        return x


# Users pick a generator by name (config key model.generator).
GENERATORS: dict[str, type[ResnetGenerator] | type[UnetGenerator]] = {"resnet": ResnetGenerator, "unet": UnetGenerator}


def generator_class(arch: str) -> type[ResnetGenerator] | type[UnetGenerator]:
    if arch not in GENERATORS:
        raise ValueError(f"unknown generator {arch!r}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[arch]


def build_generator(arch: str, **kwargs: Any) -> nn.Module:
    """Construct a generator by its registry name ("resnet" or "unet")."""
    return generator_class(arch)(**kwargs)
