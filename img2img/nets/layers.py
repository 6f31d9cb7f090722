"""Building blocks shared by the generators and discriminators."""

from __future__ import annotations

import torch
import torch.nn.functional as F
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


# --------------------------------------------------------------------------------------------
# Nearest-2x upsample + reflect-pad(1) + 3x3 conv  ==  replicate-pad(1) + 2x2 conv (4x channels)
#                                                      + PixelShuffle(2) + crop 1 px per side
#
# One axis, low-res x[0..n), upsampled u[i] = x[i // 2], padded p = reflect_pad(u, 1):
#   p[-1] = u[1] = x[0] and p[2n] = u[2n-2] = x[n-1], i.e. p[i] = x[clamp(i // 2, 0, n-1)]:
#   reflect-padding the upsampled image is replicate-padding the low-res one, then upsampling.
# With r = replicate_pad(x, 1) (r[j] = x[clamp(j-1, 0, n-1)]) and 3 taps w0 w1 w2, output
#   y[2a]   = w0 p[2a-1] + w1 p[2a]   + w2 p[2a+1] = w0 r[a]   + (w1+w2) r[a+1]
#   y[2a+1] = w0 p[2a]   + w1 p[2a+1] + w2 p[2a+2] = (w0+w1) r[a+1] + w2 r[a+2]
# so each output phase is a 2-tap filter on r: even phase [w0, w1+w2] starting at r[a], odd
# phase [w0+w1, w2] starting at r[a+1]. A 2-tap conv over r gives z[s], s = 0..n, for both.
# PixelShuffle puts z_phase[s] at 2s + phase; giving the even filter shuffle phase 1 and the odd
# filter phase 0 places y[2a] at 2a+1 and y[2a+1] at 2(a+1) + 0 = 2a+2, i.e. y[o] at o + 1:
# crop one pixel from each side. In 2-D the taps fold separably: K = R_dy W R_dx^T.
# Multiply-adds per output channel and low-res pixel (4 output pixels): 4 phases x 4 taps x Cin
# = 16 Cin, against 4 x 9 Cin = 36 Cin for the 3x3 conv on the upsampled image.



# _FOLD[phase][tap2] = the 3x3 taps that sum into each of the 2 taps of a shuffle phase, per
# axis: phase 0 holds the odd output phase [w0 + w1, w2], phase 1 the even one [w0, w1 + w2].
_FOLD = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]])
# Both axes at once, as one (9 x 16) matrix: taps (k, l) -> (phase y, phase x, tap a, tap b).
_FOLD_2D = torch.einsum("yak,xbl->klyxab", _FOLD, _FOLD).reshape(9, 16)


def fold_upconv_weight(weight: torch.Tensor) -> torch.Tensor:
    """(out, in, 3, 3) kernel of the 3x3 conv after nearest-2x upsampling -> the exactly equal
    (4 * out, in, 2, 2) kernel over the replicate-padded low-res input, in PixelShuffle's
    channel order (output channel c, phase (i, j) <- conv channel 4c + 2i + j).

    Differentiable, and cheap enough to run in every training forward (one flat matmul with the
    9 taps inner, and a transpose of 4-tap blocks; batched or einsum forms are 5-10x slower on
    wide layers), so gradients reach the 3x3 weights that checkpoints hold."""
    out_c, in_c = weight.shape[:2]
    k = (weight.reshape(-1, 9) @ _FOLD_2D.to(weight.device, weight.dtype)).reshape(out_c, in_c, 4, 4)
    return k.transpose(1, 2).reshape(out_c * 4, in_c, 2, 2)  # (out, phase, in, (a, b))


def upconv_subpixel(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """conv3x3(reflect_pad(nearest_2x(x))) computed as a 2x2 conv + PixelShuffle (see above)."""
    k = fold_upconv_weight(weight)
    b = bias.repeat_interleave(4) if bias is not None else None
    y = F.pixel_shuffle(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, b), 2)
    return y[..., 1:-1, 1:-1]


SUBPIXEL_MIN_SIDE = 16  # the sub-pixel form pays from 16 x 16 inputs up (CPU, 1 thread)


class UpConv(nn.Sequential):
    """2x upsampling as resize + 3x3 convolution.

    Transposed convolutions overlap unevenly when kernel size is not divisible by stride
    and leave checkerboard artifacts (Odena et al., Distill 2016); a resize followed by a
    convolution cannot. In nearest mode the forward computes the same function in its exact
    sub-pixel form (upconv_subpixel): 16/36 of the multiply-adds, and the parameters stay the
    3x3 conv's, so checkpoints and gradients are those of the plain form. Inputs smaller than
    SUBPIXEL_MIN_SIDE take the plain form: there the kernel fold (proportional to the weights)
    costs more than the few multiply-adds it saves (measured: docs/training.md).
    subpixel=False always runs the plain form (reference for tests and benchmarks).
    """

    def __init__(self, in_channels: int, out_channels: int, mode: str = "nearest", bias: bool = True):
        if mode not in UPSAMPLE_MODES:
            raise ValueError(f"unknown upsample mode {mode!r}; choose one of {', '.join(UPSAMPLE_MODES)}")
        super().__init__(
            nn.Upsample(scale_factor=2, mode=mode, **({} if mode == "nearest" else {"align_corners": False})),
            nn.ReflectionPad2d(1),
            nn.Conv2d(in_channels, out_channels, kernel_size=3, bias=bias),
        )
        self.subpixel = mode == "nearest"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.subpixel and min(x.shape[-2:]) >= SUBPIXEL_MIN_SIDE:
            conv: nn.Conv2d = self[2]
            return upconv_subpixel(x, conv.weight, conv.bias)
        return super().forward(x)


# --------------------------------------------------------------------------------------------
# Colour hints spread over the image: normalized convolution (Knutsson & Westin 1993).
#
# A drawing with colour hints is RGB: grey lines (R = G = B) with marks of colour painted on it
# (data/derived.py colour_hints; the web UI's brush). A mark tells the colour of its region, but
# a U-Net learns to carry it that far only slowly, and it copies the marks' strokes into the
# photo (docs/evaluation.md, "Colour hints"). So the generator sees the lines and the marks apart:
#   m = clamp((255 chroma - 2) / 6, 0, 1), chroma = max(R, G, B) - min(R, G, B): the marks
#       (grey lines, chroma 0, are not; a mark as grey as a line stays a line)
#   lines = (1 - m) grey + m: the drawing with the marks taken out (white where they were)
#   wash = (G * (m rgb) + eps g) / (G * m + eps),  coverage = G * m / (G * m + eps)
# with G a Gaussian of HINT_SIGMA pixels, computed on a grid of HINT_CELL-pixel means (the
# field is smooth), and g the mean colour of all marks: where no mark is near, the wash is their
# mean colour, and with no marks at all it is mid-grey with coverage 0.
# The anchor (UnetGenerator's hint_anchor) then gives the generator's output y the wash as its
# local mean where marks cover:  y' = clamp(y + coverage (wash - N(y)), -1, 1), with N(y) the
# same Gaussian's normalized mean of y. The network draws the detail; the marks set the colour
# and brightness of their regions, which it otherwise drifts from (darker: docs/evaluation.md).
HINT_CELL = 16    # pixels per grid cell; the generators' input sides are multiples of it
HINT_SIGMA = 64   # pixels: 1/8 of a 512-px photo (32 to 128 px guess the photo alike, docs/evaluation.md)
HINT_EPS = 1e-3   # cells of full marks the global mean stands for: coverage ~ 1 on and near any mark, 128 px or 1000


class HintWash(nn.Module):
    """RGB drawing with colour marks in [-1, 1], (N, 3, H, W) -> (N, 5, H, W), all in [-1, 1]: the
    lines without the marks, the marks' colours spread by normalized convolution, and their
    coverage (-1: no mark near). Fixed: no parameters. H and W: multiples of HINT_CELL."""

    channels = 5

    def __init__(self) -> None:
        super().__init__()
        radius = 3 * HINT_SIGMA // HINT_CELL
        t = torch.arange(-radius, radius + 1, dtype=torch.float32) * HINT_CELL
        g = torch.exp(-0.5 * (t / HINT_SIGMA) ** 2)
        self.register_buffer("kernel", g / g.sum(), persistent=False)

    def blur(self, x: torch.Tensor) -> torch.Tensor:
        """Separable Gaussian on the cell grid; zero padding (normalized convolution's borders)."""
        c, r, k = x.shape[1], self.kernel.numel() // 2, self.kernel
        x = F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), padding=(r, 0), groups=c)
        return F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), padding=(0, r), groups=c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):  # means of 8-bit colours: float32, also under bf16 training
            return self.split(x.float()).to(x.dtype)

    def anchor(self, y: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        """y (N, C, H, W) in [-1, 1] with the wash of `field` (forward's output) as its local mean
        where the marks cover; unchanged where none is near."""
        with torch.autocast(y.device.type, enabled=False):
            y32, field = y.float(), field.float()
            wash, coverage = field[:, 1:-1], (field[:, -1:] + 1) / 2
            cells = F.avg_pool2d(torch.cat([y32, torch.ones_like(y32[:, :1])], dim=1), HINT_CELL)
            spread = self.blur(cells)  # the ones channel normalizes the zero-padded borders
            local = F.interpolate(spread[:, :-1] / spread[:, -1:], size=y.shape[-2:], mode="bilinear", align_corners=False)
            return (y32 + coverage * (wash - local)).clamp(-1, 1).to(y.dtype)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        rgb = (x + 1) / 2
        chroma = rgb.amax(1, keepdim=True) - rgb.amin(1, keepdim=True)
        m = ((chroma * 255 - 2) / 6).clamp(0, 1)
        lines = rgb.mean(1, keepdim=True) * (1 - m) + m
        cells = F.avg_pool2d(torch.cat([rgb * m, m], dim=1), HINT_CELL)
        total = cells.sum(dim=(2, 3), keepdim=True)
        mean = (total[:, :3] + 0.5e-6) / (total[:, 3:] + 1e-6)  # mid-grey without marks
        spread = self.blur(cells)
        wash = (spread[:, :3] + HINT_EPS * mean) / (spread[:, 3:] + HINT_EPS)
        coverage = spread[:, 3:] / (spread[:, 3:] + HINT_EPS)
        field = F.interpolate(torch.cat([wash, coverage], dim=1), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([lines, field], dim=1) * 2 - 1


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
